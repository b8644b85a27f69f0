"""What to run next: the cells that most reduce uncertainty about the compute-optimal frontier per
unit of training cost. Pure functions over arrays; no I/O.

Let T be the frontier's predicted error at a set of inference budgets and f_c the predicted error
of candidate cell c. Their joint covariance comes from the posterior over the law's parameters —
either its Laplace approximation at the fit (linearise T and f, Cov(z) ≈ σ²(JᵀJ)⁻¹; the default,
stable with few cells) or the fit's bootstrap ensemble. Observing c with noise
σ² (the fit's residual variance) reduces the frontier's total variance by (Gaussian conditioning)

    Δ(c) = Σ_j Cov(T_j, f_c)² / (Var f_c + σ²)

and we pick greedily by Δ(c) / cost(c). After each pick the covariance is conditioned on that
pick's fantasised outcome (a rank-one update — under the Gaussian approximation the value of the
fantasy does not change the posterior covariance), so a batch spreads over what is still
uncertain instead of repeating one good region. Baselines for the benchmark: random, cheapest
first, greedy D-optimal design for the law's parameters, and the full grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .fit import Fit
from .forms import LawForm, predict
from .forms import law as law_of
from .frontier import Domain, optimum

if TYPE_CHECKING:
    from .cost import CostModel


@dataclass(frozen=True)
class Candidate:
    llm: str
    n: float  # non-embedding parameters
    visual_tokens: int
    compressor: str
    cost: float  # training cost (FLOPs or any consistent unit)
    label: str = ""  # how listings name it (an experiment's cell key, less task and seed)

    @property
    def name(self) -> str:
        return self.label or f"{self.llm} V={self.visual_tokens} {self.compressor}"


@dataclass(frozen=True)
class Pick:
    candidate: Candidate
    score: float  # variance reduction per unit cost
    variance_reduction: float  # fraction of the remaining frontier variance this pick removes
    reason: str


def training_cost(n: float, visual_tokens: int, text_tokens: float, samples: float) -> float:
    """≈ 6 · N · tokens: forward and backward over every training token."""
    return 6.0 * n * (visual_tokens + text_tokens) * samples


def frontier_targets(form, params_list: list[dict[str, float]], budgets, text_tokens,
                     n_range, v_range) -> np.ndarray:
    """[B, m] predicted frontier error at each budget, per parameter sample."""
    cols = [optimum(form, params_list, c, text_tokens, n_range, v_range)[2] for c in budgets]
    return np.stack(cols, axis=1)


def _ensemble(fit: Fit, candidates: list[Candidate], budgets, text_tokens, n_range, v_range, max_members=400):
    members = fit.bootstrap_params()[:max_members]
    if len(members) < 10:
        raise ValueError("proposals need a bootstrap ensemble; fit with bootstrap >= 10")
    t = frontier_targets(fit.law, members, budgets, text_tokens, n_range, v_range)
    f = np.stack([predict(fit.law, p, [c.n for c in candidates], [c.visual_tokens for c in candidates])
                  for p in members])
    ok = np.all(np.isfinite(t), axis=1) & np.all(np.isfinite(f), axis=1)
    t, f = t[ok], f[ok]
    t, f = t - t.mean(0), f - f.mean(0)
    b = max(len(t) - 1, 1)
    return t.T @ f / b, f.T @ f / b, (t * t).sum(0) / b  # Σ_TF [m, C], Σ_FF [C, C], Var T [m]


def _laplace(fit: Fit, candidates: list[Candidate], budgets, text_tokens, n_range, v_range, done_nv: np.ndarray):
    """The same covariances from the linearised (Laplace) posterior at the fit:
    Cov(z) ≈ σ² (JᵀJ)⁻¹ over the done cells, T and f linearised in z (G by central differences)."""
    law = fit.law
    ref = law.reference(done_nv.T)
    z = law.from_params(fit.params, ref)

    def targets(zz):
        return frontier_targets(law, [law.to_params(zz, ref)], budgets, text_tokens, n_range, v_range)[0]

    steps = 1e-4 * np.maximum(np.abs(z), 1e-2)
    g = np.stack([(targets(z + h * e) - targets(z - h * e)) / (2 * h) for h, e in zip(steps, np.eye(len(z)))], axis=1)
    g = np.nan_to_num(g)
    j_done = law.jac_z(z, law.coords(done_nv.T, ref))
    sigma2 = max(fit.residual_variance, 1e-8)
    cov = sigma2 * np.linalg.pinv(j_done.T @ j_done + 1e-9 * np.eye(len(z)))
    cand = np.array([[c.n, c.visual_tokens] for c in candidates], float)
    j_c = law.jac_z(z, law.coords(cand.T, ref))
    return g @ cov @ j_c.T, j_c @ cov @ j_c.T, np.einsum("mk,kj,mj->m", g, cov, g)


@dataclass(frozen=True)
class ProposalRequest:
    """What to choose from and how much: up to ``k`` of ``candidates``, costing at most ``budget``."""

    candidates: list[Candidate]
    k: int
    budget: float | None = None


@dataclass(frozen=True)
class DesignRequest:
    """Up to ``k`` rows costing at most ``budget`` in all; ``target`` [d, m] the region whose
    prediction matters (else the parameters); ``eligible`` the rows that may be picked (else all)."""

    k: int
    budget: float
    target: np.ndarray | None = None
    eligible: np.ndarray | None = None


def propose_frontier(fit: Fit, candidates: list[Candidate], k: int, budgets, text_tokens: float | CostModel,
                     domain: Domain, budget: float | None = None, method: str = "laplace") -> list[Pick]:
    """Greedy batch selection by expected frontier-variance reduction per cost (module docstring).

    ``method``: where the joint covariance of (frontier, candidates) comes from — ``laplace``
    (linearised at the fit; needs ``domain.trained``, the (N, V) already observed) or ``bootstrap``
    (the fit's bootstrap ensemble). The benchmark compares them.
    """
    if not candidates or k < 1:
        return []
    n_range, v_range = domain.n_range, domain.v_range
    done_nv = None if domain.trained is None else np.asarray(domain.trained, float).reshape(-1, 2)
    if method == "laplace":
        if done_nv is None:
            raise ValueError("method 'laplace' needs domain.trained, the (N, V) of the observed cells")
        s_tf, s_ff, var_t = _laplace(fit, candidates, budgets, text_tokens, n_range, v_range, np.asarray(done_nv, float))
    elif method == "bootstrap":
        s_tf, s_ff, var_t = _ensemble(fit, candidates, budgets, text_tokens, n_range, v_range)
    else:
        raise ValueError(f"unknown method {method!r}; choose laplace or bootstrap")
    cost = np.array([c.cost for c in candidates], float)
    chosen: list[Pick] = []
    for c, reduction, remaining in greedy_variance_reduction(s_tf, s_ff, max(fit.residual_variance, 1e-8), cost, k,
                                                            float(var_t.sum()), budget=budget):
        frac = reduction / remaining if remaining > 0 else 0.0
        cand = candidates[c]
        chosen.append(Pick(cand, reduction / cand.cost, float(frac),
                           f"removes {100 * frac:.0f}% of the remaining frontier variance at "
                           f"{cand.cost / cost.min():.1f}x the cheapest cell's cost"))
    return chosen


def greedy_variance_reduction(s_tf: np.ndarray, s_ff: np.ndarray, noise: float, cost: np.ndarray, k: int,
                              total_variance: float, budget: float | None = None):
    """Pick up to ``k`` candidates, greedily by the variance of the quantities of interest T they
    remove per unit cost, Δ(c) = Σ_j Cov(T_j, f_c)² / (Var f_c + σ²), conditioning the joint
    covariance on each pick (rank-one update) and never spending more than ``budget``.

    ``s_tf`` [m, C] = Cov(T, f), ``s_ff`` [C, C] = Cov(f, f), ``total_variance`` = Σ_j Var T_j.
    Yields (index, Δ, the total variance of T left before the pick)."""
    remaining = total_variance
    available = np.ones(len(cost), bool)
    spent = 0.0
    for _ in range(k):
        denom = np.diag(s_ff) + noise
        reduction = (s_tf ** 2).sum(0) / denom
        score = np.where(available, reduction / cost, -np.inf)
        if budget is not None:
            score = np.where(spent + cost <= budget * (1 + 1e-12), score, -np.inf)
        c = int(np.argmax(score))
        if not np.isfinite(score[c]):
            return
        yield c, float(reduction[c]), remaining
        remaining -= float(reduction[c])
        spent += float(cost[c])
        available[c] = False
        s_tf = s_tf - np.outer(s_tf[:, c], s_ff[c]) / denom[c]
        s_ff = s_ff - np.outer(s_ff[:, c], s_ff[c]) / denom[c]


def propose_d_optimal(fit: Fit, done_nv: np.ndarray, candidates: list[Candidate], k: int) -> list[Candidate]:
    """Greedy D-optimal design: maximise log det of the law's Fisher information per cost."""
    law = fit.law
    ref = law.reference(done_nv.T)
    z = law.from_params(fit.params, ref)

    def jac(nv):
        return law.jac_z(z, law.coords(nv.T, ref))

    j_done = jac(done_nv)
    info = j_done.T @ j_done + 1e-9 * np.eye(len(z))
    cand = np.array([[c.n, c.visual_tokens] for c in candidates], float)
    jc = jac(cand)
    cost = np.array([c.cost for c in candidates])
    out, available = [], np.ones(len(candidates), bool)
    for _ in range(min(k, len(candidates))):
        base = np.linalg.slogdet(info)[1]
        gains = np.array([np.linalg.slogdet(info + np.outer(jc[i], jc[i]))[1] - base for i in range(len(candidates))])
        score = np.where(available, gains / cost, -np.inf)
        i = int(np.argmax(score))
        out.append(candidates[i])
        available[i] = False
        info = info + np.outer(jc[i], jc[i])
    return out


def propose_random(candidates: list[Candidate], k: int, seed: int = 0) -> list[Candidate]:
    order = np.random.default_rng(seed).permutation(len(candidates))
    return [candidates[i] for i in order[:k]]


def propose_cheapest(candidates: list[Candidate], k: int) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.cost, c.n, c.visual_tokens))[:k]


# ------------------------------------------------------------------------------------------------
# pools: any two inputs, a cost per row, a target region


@dataclass(frozen=True)
class Linearisation:
    """The law linearised at its MAP fit to the observed rows: what experiment design needs.

    Cov(z) ≈ σ² (JᵀJ + λI)⁻¹ (J over the observed rows; λ the MAP prior's weight), and the
    predictions' gradients ``jac(raw)`` ([d, m] inputs) in the same internal coordinates."""

    law: LawForm
    z: np.ndarray
    reference: object
    cov: np.ndarray
    noise: float

    def jac(self, raw) -> np.ndarray:
        return self.law.jac_z(self.z, self.law.coords(np.asarray(raw, float), self.reference))

    @property
    def params(self) -> dict[str, float]:
        return self.law.to_params(self.z, self.reference)


def linearise(form, raw, y, reference, loss: str = "squared", kind: str = "loss",
              strength: float = 1e-4) -> Linearisation:
    """MAP fit of the observed (raw [d, n], y) and its Laplace covariance (see :class:`Linearisation`)."""
    from .fit import fit_map_inputs

    raw, y = np.atleast_2d(np.asarray(raw, float)), np.asarray(y, float)
    law = law_of(form)
    params = fit_map_inputs(raw, y, law, loss, kind, strength, reference)
    z = law.from_params(params, reference)
    k = len(z)
    resid = predict(law, params, *raw) - y
    floor = (1e-3 * float(np.mean(np.abs(y)))) ** 2
    noise = max(float(np.sum(resid ** 2)) / (len(y) - k), floor) if len(y) > k + 1 else max(floor, 1e-8)
    j = law.jac_z(z, law.coords(raw, reference))
    lam = strength * float(np.mean(y)) ** 2
    cov = noise * np.linalg.pinv(j.T @ j + lam * np.eye(k))
    return Linearisation(law, z, reference, cov, noise)


def design_pool(form, raw, y, cost, request: DesignRequest, loss: str = "squared", kind: str = "loss",
                strength: float = 1e-4) -> list[int]:
    """Up to ``request.k`` rows of a pool to run next, never costing more than ``request.budget`` in all.

    ``raw`` [d, n]: the pool's inputs, one row per input of the law. Rows with a finite ``y``
    are observed; the others (where ``eligible``, default all) are candidates. The objective is
    the variance of the law's predictions at ``target`` ([d, m]: the region whose prediction
    matters), or, without a target, the variance of the law's parameters; both per unit cost,
    greedily with rank-one conditioning. With nothing observed the law is linearised at its prior
    (at the pool's centre); the MAP fit keeps it defined while fewer rows are observed than the
    law has parameters. Coordinates are normalised by the pool's own reference (targets included),
    so the prior means the same whatever was observed.
    """
    k, budget, target, eligible = request.k, request.budget, request.target, request.eligible
    raw = np.atleast_2d(np.asarray(raw, float))
    y, cost = (np.asarray(a, float) for a in (y, cost))
    law = law_of(form)
    observed = np.isfinite(y)
    candidates = ~observed if eligible is None else (~observed & np.asarray(eligible, bool))
    idx = np.flatnonzero(candidates & (cost <= budget * (1 + 1e-12)))
    if k < 1 or not len(idx):
        return []
    points = raw if target is None else np.concatenate([raw, np.atleast_2d(np.asarray(target, float))], axis=1)
    reference = law.reference(points)
    if not observed.any():
        # nothing to linearise at yet: the prior alone, at the pool's centre and a typical metric value
        centre = np.array(reference)[:, None] if reference is not None else np.median(points, axis=1)[:, None]
        lin = linearise(law, centre, np.array([1.0]), reference, loss, kind, strength)
    else:
        lin = linearise(law, raw[:, observed], y[observed], reference, loss, kind, strength)
    j_c = lin.jac(raw[:, idx])
    g = lin.jac(target) if target is not None else np.eye(len(lin.z))
    s_tf = g @ lin.cov @ j_c.T
    s_ff = j_c @ lin.cov @ j_c.T
    total = float(np.einsum("mk,kj,mj->", g, lin.cov, g))
    return [int(idx[c]) for c, _, _ in greedy_variance_reduction(s_tf, s_ff, lin.noise, cost[idx], k, total,
                                                                 budget=budget)]


def design_pool_outputs(forms, raw, ys, cost, request: DesignRequest, loss: str = "squared", kind: str = "loss",
                        strength: float = 1e-4) -> list[int]:
    """:func:`design_pool` for several outputs each row reveals at once (a domain mixture's five
    losses): one law per output (``forms[o]`` over ``ys[o]``), independent, so a row's value is the
    sum over outputs of the target variance it removes, and each pick conditions every output's
    covariance. One output is :func:`design_pool` itself."""
    if len(forms) == 1:
        return design_pool(forms[0], raw, ys[0], cost, request, loss, kind, strength)
    k, budget, target, eligible = request.k, request.budget, request.target, request.eligible
    raw = np.atleast_2d(np.asarray(raw, float))
    ys = [np.asarray(y, float) for y in ys]
    cost = np.asarray(cost, float)
    observed = np.isfinite(ys[0])
    candidates = ~observed if eligible is None else (~observed & np.asarray(eligible, bool))
    idx = np.flatnonzero(candidates & (cost <= budget * (1 + 1e-12)))
    if k < 1 or not len(idx):
        return []
    points = raw if target is None else np.concatenate([raw, np.atleast_2d(np.asarray(target, float))], axis=1)
    blocks = []
    for form, y in zip(forms, ys):
        law = law_of(form)
        reference = law.reference(points)
        if not observed.any():
            centre = np.array(reference)[:, None] if reference is not None else np.median(points, axis=1)[:, None]
            lin = linearise(law, centre, np.array([1.0]), reference, loss, kind, strength)
        else:
            lin = linearise(law, raw[:, observed], y[observed], reference, loss, kind, strength)
        j_c = lin.jac(raw[:, idx])
        g = lin.jac(target) if target is not None else np.eye(len(lin.z))
        blocks.append([g @ lin.cov @ j_c.T, j_c @ lin.cov @ j_c.T, lin.noise])
    c_cost = cost[idx]
    available, spent, out = np.ones(len(idx), bool), 0.0, []
    for _ in range(k):
        reduction = sum((s_tf ** 2).sum(0) / (np.diag(s_ff) + noise) for s_tf, s_ff, noise in blocks)
        score = np.where(available & (spent + c_cost <= budget * (1 + 1e-12)), reduction / c_cost, -np.inf)
        c = int(np.argmax(score))
        if not np.isfinite(score[c]):
            break
        out.append(int(idx[c]))
        available[c] = False
        spent += float(c_cost[c])
        for block in blocks:
            s_tf, s_ff, noise = block
            denom = s_ff[c, c] + noise
            block[0] = s_tf - np.outer(s_tf[:, c], s_ff[c]) / denom
            block[1] = s_ff - np.outer(s_ff[:, c], s_ff[c]) / denom
    return out

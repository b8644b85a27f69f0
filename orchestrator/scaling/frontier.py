"""The compute-optimal frontier: for an inference budget C, the (N, V) with the lowest predicted error.

Inference cost per sample is the LLM prefill of the workload's cost model plus a fixed part
(the vision tower does not depend on N or V):

    FLOPs(N, V) = 2 · N · (Q + V) + F₀        Q = text tokens (0 when the text is cached)

For the multiplicative law at a binding budget, N = (C − F₀) / (2(Q + V)) and

    log error(V) = const + α·log(Q + V) − β·log V   ⇒   V* = β·Q / (α − β)      (α > β)

independent of C; with Q = 0 (or α ≤ β) the error is monotone in V and the optimum sits at the
smallest (largest) V allowed. The numerical search below handles any law form and the bounds of
what can be run (N and V ranges); the discrete optimum picks among the cells the user can train.

The cost need not be FLOPs: any :class:`.cost.CostModel` (a measured latency or memory table)
serves, through its ``max_n(budget, V)`` — the largest LLM that fits the budget at V. A closed-form
V* needs a law form that has one and a cost linear in Q + V (the FLOPs model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cost import as_cost, llm_prefill_flops
from .fit import Fit
from .forms import predict

GRID_POINTS = 2001


def inference_flops(n, v, text_tokens: float, fixed_flops: float = 0.0):
    return llm_prefill_flops(np.asarray(n, float), np.asarray(v, float), text_tokens) + fixed_flops


@dataclass(frozen=True)
class FrontierPoint:
    budget: float
    n: float
    v: float
    error: float
    n_ci: tuple[float, float]
    v_ci: tuple[float, float]
    error_ci: tuple[float, float]
    discrete: tuple[float, float, float] | None  # (N, V, predicted error) of the best runnable cell
    extrapolated: bool = False  # N* or V* outside what was trained: a prediction beyond the data
    discrete_trained: bool | None = None  # whether that best runnable cell was trained (else a candidate)


@dataclass(frozen=True)
class Frontier:
    form: str
    text_tokens: float
    optimal_visual_tokens: float | None  # the unconstrained continuous optimum (multiplicative law)
    optimal_visual_tokens_ci: tuple[float, float] | None
    points: tuple[FrontierPoint, ...]
    cost: str = "flops"  # the cost model's name: flops, latency:B, memory:B
    cost_unit: str = "FLOPs"
    cost_label: str = "inference FLOPs"

    def as_dict(self) -> dict:
        return {
            "text_tokens": self.text_tokens, "cost": self.cost, "cost_unit": self.cost_unit,
            "cost_label": self.cost_label,
            "optimal_visual_tokens": self.optimal_visual_tokens,
            "optimal_visual_tokens_ci": list(self.optimal_visual_tokens_ci) if self.optimal_visual_tokens_ci else None,
            "points": [
                {"budget": p.budget, **({"budget_flops": p.budget} if self.cost == "flops" else {}),
                 "llm_params": p.n, "visual_tokens": p.v, "error": p.error,
                 "llm_params_ci": list(p.n_ci), "visual_tokens_ci": list(p.v_ci), "error_ci": list(p.error_ci),
                 "extrapolated": p.extrapolated,
                 "runnable": None if p.discrete is None else
                 {"llm_params": p.discrete[0], "visual_tokens": p.discrete[1], "error": p.discrete[2],
                  "trained": p.discrete_trained}}
                for p in self.points
            ],
        }


def optimum(form, params_list: list[dict[str, float]], budget: float, cost,
            n_range: tuple[float, float], v_range: tuple[float, float], fixed_flops: float = 0.0):
    """Continuous optimum under ``cost(N, V) ≤ budget`` for each parameter set: arrays (N*, V*, error*).

    ``cost``: a cost model (:mod:`.cost`), or a number Q for the FLOPs model with ``fixed_flops``.
    Searches V on a fine log grid; N takes the rest of the budget, capped at n_range[1]. Budgets
    too small for (n_min, v_min) give NaN.
    """
    model = as_cost(cost, fixed_flops)
    v = np.exp(np.linspace(np.log(v_range[0]), np.log(v_range[1]), GRID_POINTS))
    n = model.max_n(budget, v, n_range)
    with np.errstate(invalid="ignore"):
        feasible = n >= n_range[0] * (1 - 1e-9)  # the cheapest budget is exactly (n_min, v_min): allow rounding
    n = np.where(feasible, n, n_range[0])
    out_n, out_v, out_e = [], [], []
    for params in params_list:
        err = np.where(feasible, predict(form, params, np.maximum(n, 1e-30), v), np.inf)
        i = int(np.argmin(err))
        found = np.isfinite(err[i])
        out_n.append(n[i] if found else np.nan)
        out_v.append(v[i] if found else np.nan)
        out_e.append(err[i] if found else np.nan)
    return np.array(out_n), np.array(out_v), np.array(out_e)


def _ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if not len(s):
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2
    return float(np.quantile(s, tail)), float(np.quantile(s, 1 - tail))


@dataclass(frozen=True)
class Domain:
    """Where the frontier is searched: N and V within their ranges; ``runnable`` the (N, V) that can
    be trained (the best of them is named at each budget), ``trained`` the (N, V) observed."""

    n_range: tuple[float, float]
    v_range: tuple[float, float]
    runnable: list[tuple[float, float]] | None = None
    trained: list[tuple[float, float]] | None = None


def frontier(fit: Fit, budgets, text_tokens, domain: Domain, fixed_flops: float = 0.0,
             max_bootstrap: int = 200) -> Frontier:
    """The frontier at each budget, with bootstrap intervals and the best runnable (N, V).

    ``text_tokens``: Q of the FLOPs model, or a cost model (:mod:`.cost`). A point whose N* or V*
    lies outside the trained range is marked extrapolated, and the best runnable cell says whether
    it was trained or is only a candidate."""
    n_range, v_range, runnable, trained = domain.n_range, domain.v_range, domain.runnable, domain.trained
    model = as_cost(text_tokens, fixed_flops)
    q = model.linear_text_tokens
    boot = fit.bootstrap_params()[:max_bootstrap]
    seen = {(float(a), float(b)) for a, b in (trained if trained is not None else [])}
    n_seen = (min(a for a, _ in seen), max(a for a, _ in seen)) if seen else n_range
    v_seen = (min(b for _, b in seen), max(b for _, b in seen)) if seen else v_range
    points = []
    for c in np.asarray(budgets, float):
        n, v, e = optimum(fit.law, [fit.params], c, model, n_range, v_range)
        bn, bv, be = optimum(fit.law, boot, c, model, n_range, v_range) if boot else (n, v, e)
        best = None
        if runnable:
            cand = np.array(runnable, float)
            ok = model.price(cand) <= c
            if ok.any():
                errs = np.where(ok, fit.predict(cand[:, 0], cand[:, 1]), np.inf)
                i = int(np.argmin(errs))
                best = (float(cand[i, 0]), float(cand[i, 1]), float(errs[i]))
        outside = bool(np.isfinite(n[0]) and (n[0] > n_seen[1] * (1 + 1e-9) or n[0] < n_seen[0] * (1 - 1e-9)
                                              or v[0] > v_seen[1] * (1 + 1e-9) or v[0] < v_seen[0] * (1 - 1e-9)))
        points.append(FrontierPoint(float(c), float(n[0]), float(v[0]), float(e[0]), _ci(bn, fit.ci_level),
                                    _ci(bv, fit.ci_level), _ci(be, fit.ci_level), best, outside,
                                    None if best is None else (best[0], best[1]) in seen))
    v_star = v_star_ci = None
    form = fit.law
    if q is not None:  # a cost linear in Q + V: the law form's closed-form V*, if it has one
        v_star = form.optimal_visual_tokens(fit.params, q, *v_range)
    if v_star is not None and q is not None:
        samples = np.array([form.optimal_visual_tokens(p, q, *v_range) for p in boot])
        v_star_ci = _ci(samples, fit.ci_level) if len(samples) else None
    return Frontier(fit.form, float("nan") if q is None else q, v_star, v_star_ci, tuple(points), model.name,
                    model.unit, model.label)


def compare_frontiers(fit: Fit, base: Frontier, base_cost, other, n_range: tuple[float, float],
                      v_range: tuple[float, float]) -> dict:
    """Where two cost models disagree. For each point (N*, V*) of ``base`` that ``other`` can price,
    its cost under ``other`` is the budget there, and ``other``'s optimum at that budget is the
    choice it would make for the same price: (N', V'). Summarised as medians over the budgets,
    with a sentence such as "at batch 1 on cpu, V* rises from 14 to 144"."""
    pairs = []
    for p in base.points:
        if not (np.isfinite(p.n) and np.isfinite(p.v)):
            continue
        price = other.price(np.array([[p.n, p.v]]))[0]
        if not np.isfinite(price):
            continue
        n2, v2, e2 = optimum(fit.law, [fit.params], float(price), other, n_range, v_range)
        if np.isfinite(n2[0]):
            pairs.append({"budget": p.budget, "n": p.n, "v": p.v, "error": p.error, "other_budget": float(price),
                          "other_n": float(n2[0]), "other_v": float(v2[0]), "other_error": float(e2[0])})
    summary: dict = {"base": base_cost.name, "other": other.name, "pairs": pairs, "disagree": False}
    if not pairs:
        summary["sentence"] = f"{other.label}: no frontier point of {base_cost.name} lies within what it can price"
        return summary
    def gap(q):  # how far apart two choices are: the larger of the V and N ratios
        return max(max(q["v"], q["other_v"]) / max(min(q["v"], q["other_v"]), 1e-12),
                   max(q["n"], q["other_n"]) / max(min(q["n"], q["other_n"]), 1e-30))

    differ = [q for q in pairs if gap(q) > 1.5]
    where = other.label.split(" (")[0]
    if differ:
        q = max(differ, key=gap)
        moves = []  # only what moves by more than 1.5x: never "V* falls from 1 to 1"
        if max(q["v"], q["other_v"]) / max(min(q["v"], q["other_v"]), 1e-12) > 1.5:
            moves.append(f"V* {'rises' if q['other_v'] > q['v'] else 'falls'} from {q['v']:.3g} to {q['other_v']:.3g}")
        if max(q["n"], q["other_n"]) / max(min(q["n"], q["other_n"]), 1e-30) > 1.5:
            moves.append(f"N* {'rises' if q['other_n'] > q['n'] else 'falls'} from {q['n']:.3g} to {q['other_n']:.3g}")
        sentence = (f"{where}: " + " and ".join(moves)
                    + f" for the price of {base_cost.name}'s optimum at {q['budget']:.3g} {base_cost.unit}; "
                    f"the two disagree at {len(differ)} of {len(pairs)} budgets")
    else:
        sentence = f"{where}: agrees with {base_cost.name} at all {len(pairs)} budgets (V* and N* within 1.5x)"
    summary.update(disagree=bool(differ), budgets_disagreeing=len(differ), sentence=sentence)
    return summary


def default_budgets(n_range: tuple[float, float], v_range: tuple[float, float], text_tokens,
                    count: int = 8, fixed_flops: float = 0.0) -> np.ndarray:
    """Log-spaced budgets from the cheapest to the most expensive runnable configuration
    (``text_tokens``: Q of the FLOPs model, or a cost model)."""
    model = as_cost(text_tokens, fixed_flops)
    lo = float(model(n_range[0], v_range[0]))
    hi = float(model(n_range[1], v_range[1]))
    return np.exp(np.linspace(np.log(lo), np.log(hi), count))


__all__ = ["Frontier", "FrontierPoint", "compare_frontiers", "default_budgets", "frontier", "inference_flops",
           "optimum"]

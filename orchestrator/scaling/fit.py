"""Scaling-law fitting: pure functions over arrays, returning frozen results. No I/O.

Law forms (registry ``FORMS``), with N the LLM's non-embedding parameters and V visual tokens:

    multiplicative   error(N, V) = a · N^-α · V^-β + d            (Li et al. 2025, the default)
    additive         error(N, V) = A · N^-α + B · V^-β + d

The fitted metric is an error rate in [0, 1] or a loss (any positive value, e.g. eval loss in
nats); its kind only sets what values are admissible (``METRIC_KINDS``). An error of exactly 0 or
1 — what a small eval set produces — is an observation like any other: the floor d is then held at
0 (it must stay below the smallest value), and a log-scale loss reads an error of 0 as
``LOG_FLOOR`` (log 0 is −∞); relative errors (leave-one-out, hold-out) are taken over the points
above 0. The fit says how many points sit at a bound. Parameters are kept in
the meaningful region — coefficients ≥ 0, 0 ≤ exponents ≤ 3, 0 ≤ d < min(observed metric) — because an unconstrained fit of such data collapses (a ≫ 1 with
d ≈ −a). Fitting is bounded least squares from a deterministic grid of starting points, in normalised units N/N₀, V/V₀ (N₀, V₀ the geometric means) for conditioning;
coefficients are optimised as logarithms and reported in the original units. Losses:

    squared     Σ (ê − e)²
    huber_log   Σ Huber_δ(log ê − log e),  δ = 10⁻³   (Chinchilla's approach 3)

Goodness of fit is reported as the objective actually minimised (½Σr² or ΣHuber), and as RMSE
and R² = 1 − Σ(ê − e)² / Σ(e − ē)² in the metric's own units.

Uncertainty: a seeded case bootstrap (resample cells with replacement, refit) gives percentile
intervals; leave-one-out and hold-out-the-largest-N give out-of-sample relative errors. Every
solve is a projected Levenberg–Marquardt batched over problems (starts, bootstrap replicates,
held-out points are weight vectors over the same data), so 1000 replicates take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .forms import FORMS, METRIC_KINDS, FitError, LawForm, predict, reference_point

HUBER_DELTA = 1e-3
LOG_FLOOR = 1e-4  # what a log-scale loss reads for an observed 0 (below any eval set's resolution)


# ------------------------------------------------------------------------------------------------
# losses: what the fit minimises (a registry: the spec's fit.loss and the CLI's --loss list it)


class Loss:
    name: str
    summary: str

    def residuals(self, pred, jac, e, w):
        """(residuals [B, n], their Jacobian [B, n, k], IRLS weights) at predictions ``pred``."""
        raise NotImplementedError

    def cost(self, r, w) -> np.ndarray:
        raise NotImplementedError

    def objective(self, r, w, sse: float) -> float:
        """The minimised objective at the fit, as reported (``sse``: Σ (ê − e)² of the reported law)."""
        return float(self.cost(r, w)[0])


class Squared(Loss):
    name, summary = "squared", "Σ (ê − e)²: least squares in the metric's units"

    def residuals(self, pred, jac, e, w):
        return pred - e, jac, w

    def cost(self, r, w):
        return 0.5 * np.sum(w * r * r, axis=-1)

    def objective(self, r, w, sse):
        return 0.5 * sse


class HuberLog(Loss):
    name, summary = "huber_log", f"Σ Huber_δ(log ê − log e), δ = {HUBER_DELTA:g} (Chinchilla's approach 3)"

    def residuals(self, pred, jac, e, w):
        pred = np.maximum(pred, 1e-300)
        r = np.log(pred) - np.log(np.maximum(e, LOG_FLOOR))
        huber = np.where(np.abs(r) <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(np.abs(r), 1e-300))
        return r, jac / pred[..., None], w * huber

    def cost(self, r, w):
        a = np.abs(r)
        rho = np.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))
        return np.sum(w * rho, axis=-1)


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (Squared(), HuberLog())}


def _loss(name: str) -> Loss:
    try:
        return LOSSES[name]
    except KeyError:
        raise FitError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


# ------------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class Fit:
    form: str
    loss: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    ci_level: float
    sse: float  # Σ (ê − e)² in the metric's units, whatever the loss
    objective: float  # the minimised objective: ½Σr² (squared) or ΣHuber_δ(log ê − log e) (huber_log)
    rmse: float
    r2: float
    n_points: int
    loo_rel_error: float | None
    loo_max_rel_error: float | None
    holdout_largest_rel_error: float | None
    bootstrap: np.ndarray = field(repr=False)  # [B, k] parameter samples (original units, FORMS order)
    bootstrap_failures: int = 0
    kind: str = "error"
    at_bound: int = 0  # points at a bound of the metric's range (an error of exactly 0 or 1)

    def predict(self, n, v) -> np.ndarray:
        return predict(self.form, self.params, n, v)

    def bootstrap_params(self) -> list[dict[str, float]]:
        names = FORMS[self.form].params
        return [dict(zip(names, row)) for row in self.bootstrap]

    @property
    def residual_variance(self) -> float:
        k = len(self.params)
        return self.sse / max(self.n_points - k, 1)


def check_data(n, v, e, form: str, kind: str = "error") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in METRIC_KINDS:
        raise FitError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    if form not in FORMS:
        raise FitError(f"unknown law form {form!r}; choose one of {', '.join(FORMS)}")
    n, v, e = (np.asarray(a, dtype=float).ravel() for a in (n, v, e))
    if not (len(n) == len(v) == len(e)):
        raise FitError("llm_params, visual_tokens and error must have the same length")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(v)) and np.all(np.isfinite(e))):
        raise FitError("the data holds NaN or infinite values; drop or fix those cells")
    if np.any(n <= 0) or np.any(v <= 0):
        raise FitError("llm_params and visual_tokens must be positive")
    outside = METRIC_KINDS[kind].outside(e)
    if outside.any():
        if kind == "error":
            raise FitError(f"an error rate must lie between 0 and 1 (found {e[outside][0]:g}); a loss needs "
                           "--metric-kind loss")
        raise FitError(f"a loss must be positive (found {e[outside][0]:g})")
    k = len(FORMS[form].params)
    if len(e) <= k:
        raise FitError(f"{len(e)} points cannot identify the {form} law's {k} parameters; run at least {k + 1} cells")
    if len(np.unique(n)) < 2:
        raise FitError("all cells have the same LLM size: the N exponent is not identifiable; add another LLM")
    if len(np.unique(v)) < 2:
        raise FitError("all cells have the same number of visual tokens: the V exponent is not identifiable; "
                       "add another visual_tokens value")
    return n, v, e


def _objective(law: LawForm, z, x, y, e, w, loss: str):
    """Residuals [B, n], their Jacobian [B, n, k] and the IRLS weights for ``loss``."""
    return _loss(loss).residuals(law.predict_z(z, x, y), law.jac_z(z, x, y), e, w)


def _cost(r, w, loss: str) -> np.ndarray:
    return _loss(loss).cost(r, w)


def _solve_batch(law: LawForm, x, y, e, w, z0, loss: str, iters: int = 300,
                 prior: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Projected Levenberg–Marquardt on B weighted problems at once.

    ``w`` [B, n]: per-problem point weights (bootstrap counts; 0 holds a point out);
    ``z0`` [B, k]: starting points. Returns the solutions [B, k] and their costs [B].
    Each problem's floor (the law's ``floor`` parameter, d) stays below the smallest value among
    the points it sees.
    ``prior`` (z̄, λ) adds ½λ‖z − z̄‖² to the objective: a maximum a posteriori fit that stays
    defined with fewer points than parameters (experiment design starts from nothing).
    """
    k = z0.shape[1]
    zbar, lam = prior if prior is not None else (np.zeros(k), 0.0)

    def total(r, ww, zz):
        return _cost(r, ww, loss) + 0.5 * lam * np.sum((zz - zbar) ** 2, axis=-1)

    visible = np.where(w > 0, e, np.inf)
    lo, hi = law.bounds(1.0)
    lo = np.broadcast_to(lo, z0.shape).copy()
    hi = np.broadcast_to(hi, z0.shape).copy()
    if law.floor_index is not None:
        hi[:, law.floor_index] = visible.min(axis=1) * (1 - 1e-9)
    z = np.clip(z0, lo, hi)
    r, _, _ = _objective(law, z, x, y, e, w, loss)
    cost = total(r, w, z)
    damping = np.full(len(z), 1e-3)
    eye = np.eye(k)
    active = np.arange(len(z))  # problems still moving; converged ones drop out of the batch
    for _ in range(iters):
        if not len(active):
            break
        za, wa, ca, da = z[active], w[active], cost[active], damping[active]
        r, jac, wt = _objective(law, za, x, y, e, wa, loss)
        jw = jac * wt[..., None]
        a = np.einsum("bnk,bnj->bkj", jw, jac) + lam * eye
        g = np.einsum("bnk,bn->bk", jw, r) + lam * (za - zbar)
        diag = np.einsum("bkk->bk", a)
        lhs = a + (da[:, None] * np.maximum(diag, 1e-12))[:, :, None] * eye + 1e-12 * eye
        step = -np.linalg.solve(lhs, g[..., None])[..., 0]
        z_new = np.clip(za + step, lo[active], hi[active])
        r_new, _, _ = _objective(law, z_new, x, y, e, wa, loss)
        c_new = total(r_new, wa, z_new)
        better = np.isfinite(c_new) & (c_new < ca)
        gain = np.where(better, (ca - c_new) / np.maximum(ca, 1e-300), 0.0)
        z[active] = np.where(better[:, None], z_new, za)
        cost[active] = np.where(better, c_new, ca)
        damping[active] = np.where(better, np.maximum(da / 3, 1e-9), np.minimum(da * 4, 1e12))
        done = (better & (gain < 1e-10)) | (damping[active] >= 1e12)
        active = active[~done]
    return z, cost


def _best_of(law, x, y, e, w_one: np.ndarray, starts: np.ndarray, loss: str) -> np.ndarray:
    """Solve one problem from many starts (batched) and keep the best."""
    z, cost = _solve_batch(law, x, y, e, np.broadcast_to(w_one, (len(starts), len(e))), starts, loss)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    if not np.isfinite(cost).any():
        raise FitError("no starting point converged; check the data")
    return z[int(np.argmin(cost))]


def _fit_z(form: str, n, v, e, loss: str, n0: float, v0: float) -> np.ndarray:
    law = FORMS[form]
    _loss(loss)
    x, y = np.log(n / n0), np.log(v / v0)
    return _best_of(law, x, y, e, np.ones(len(e)), np.array(law.starts(e)), loss)


def fit_params(n, v, e, form: str = "multiplicative", loss: str = "squared", kind: str = "error") -> dict[str, float]:
    """The best-fitting parameters only (no uncertainty)."""
    n, v, e = check_data(n, v, e, form, kind)
    n0, v0 = reference_point(n, v)
    return FORMS[form].to_params(_fit_z(form, n, v, e, loss, n0, v0), n0, v0)


def fit_map(n, v, e, form: str = "multiplicative", loss: str = "squared", kind: str = "error",
            strength: float = 1e-4, reference: tuple[float, float] | None = None) -> dict[str, float]:
    """A maximum a posteriori fit that any number of points ≥ 1 defines: least squares plus
    ½λ‖z − z̄‖² with λ = strength · mean(e)², z̄ the middle of the starting grid (moderate
    exponents, d half the smallest value) in coordinates normalised by ``reference`` (default the
    data's geometric means). With points enough to identify the law, the prior barely moves it.
    """
    if kind not in METRIC_KINDS:
        raise FitError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    n, v, e = (np.asarray(a, dtype=float).ravel() for a in (n, v, e))
    admissible = np.all(np.isfinite(e)) and not METRIC_KINDS[kind].outside(e).any()
    if not len(e) or np.any(n <= 0) or np.any(v <= 0) or not admissible:
        raise FitError(f"a MAP fit needs at least one point with positive inputs and a metric in "
                       f"{METRIC_KINDS[kind].interval}")
    law = FORMS[form]
    n0, v0 = reference or reference_point(n, v)
    x, y = np.log(n / n0), np.log(v / v0)
    starts = np.array(law.starts(e))
    prior = (starts[len(starts) // 2], strength * float(np.mean(e)) ** 2)
    z, cost = _solve_batch(law, x, y, e, np.ones((len(starts), len(e))), starts, loss, prior=prior)
    return law.to_params(z[int(np.argmin(np.where(np.isfinite(cost), cost, np.inf)))], n0, v0)


def fit_law(n, v, e, form: str = "multiplicative", loss: str = "squared", bootstrap: int = 1000,
            seed: int = 0, ci_level: float = 0.9, cross_validate: bool = True, kind: str = "error") -> Fit:
    """Fit the law with bootstrap intervals and out-of-sample errors (see module docstring).

    ``kind`` is the metric's (``METRIC_KINDS``); ``ci_level`` the bootstrap interval's coverage;
    ``cross_validate`` adds leave-one-out and hold-out-the-largest-N errors.
    """
    if not 0 < ci_level < 1:
        raise FitError(f"the interval level must lie strictly between 0 and 1, got {ci_level:g}")
    n, v, e = check_data(n, v, e, form, kind)
    law = FORMS[form]
    n0, v0 = reference_point(n, v)
    z = _fit_z(form, n, v, e, loss, n0, v0)
    params = law.to_params(z, n0, v0)
    x, y = np.log(n / n0), np.log(v / v0)
    residuals = predict(form, params, n, v) - e
    sse = float(np.sum(residuals ** 2))
    r, _, w = _objective(law, z[None], x, y, e, np.ones((1, len(e))), loss)
    objective = _loss(loss).objective(r, w, sse)
    spread = float(np.sum((e - e.mean()) ** 2))
    r2 = 1.0 - sse / spread if spread > 0 else float("nan")

    # bootstrap: all replicates in one batch, each from the full fit and two grid starts
    rng = np.random.default_rng(seed)
    counts = np.array([np.bincount(rng.integers(0, len(e), len(e)), minlength=len(e)) for _ in range(bootstrap)],
                      dtype=float).reshape(bootstrap, len(e))
    usable = np.array([len(np.unique(n[c > 0])) >= 2 and len(np.unique(v[c > 0])) >= 2 for c in counts], dtype=bool)
    failures = int((~usable).sum())
    counts = counts[usable]
    boot = np.zeros((0, len(law.params)))
    if len(counts):
        grid_starts = np.array(law.starts(e))
        starts = [z, grid_starts[len(grid_starts) // 2], grid_starts[-1]]
        zs, costs = _solve_batch(law, x, y, e, np.repeat(counts, len(starts), axis=0).astype(float),
                                 np.tile(np.array(starts), (len(counts), 1)), loss)
        zs = zs.reshape(len(counts), len(starts), -1)
        costs = np.where(np.isfinite(costs), costs, np.inf).reshape(len(counts), len(starts))
        best = zs[np.arange(len(counts)), np.argmin(costs, axis=1)]
        boot = np.array([[law.to_params(zb, n0, v0)[p] for p in law.params] for zb in best], dtype=float)
    tail = (1 - ci_level) / 2
    ci = {p: ((float(np.quantile(boot[:, i], tail)), float(np.quantile(boot[:, i], 1 - tail)))
              if len(boot) else (float("nan"), float("nan"))) for i, p in enumerate(law.params)}

    loo = loo_max = holdout = None
    if cross_validate:
        loo, loo_max = _leave_one_out(form, n, v, e, loss, n0, v0, z)
        holdout = _holdout_largest(form, n, v, e, loss, kind)
    return Fit(form, loss, params, ci, ci_level, sse, objective, float(np.sqrt(sse / len(e))), r2, len(e), loo,
               loo_max, holdout, boot, failures, kind, int(METRIC_KINDS[kind].at_bound(e).sum()))


def _relative(pred: np.ndarray, e: np.ndarray) -> np.ndarray:
    """|ê − e| / e over the points above 0 (an observed 0 has no relative error)."""
    keep = e > 0
    return np.abs(pred[keep] - e[keep]) / e[keep]


def _leave_one_out(form, n, v, e, loss, n0, v0, z_full) -> tuple[float | None, float | None]:
    law = FORMS[form]
    x, y = np.log(n / n0), np.log(v / v0)
    held = [i for i in range(len(e)) if len(np.unique(np.delete(n, i))) >= 2 and len(np.unique(np.delete(v, i))) >= 2
            and len(e) - 1 > len(law.params)]
    if not held:
        return None, None
    # one point moves the optimum little: each held-out fit starts from the full fit (one start,
    # not the grid), which makes leave-one-out one batched solve of n problems
    starts = z_full[None]
    w = np.ones((len(held), len(e)))
    w[np.arange(len(held)), held] = 0.0
    zs, costs = _solve_batch(law, x, y, e, np.repeat(w, len(starts), axis=0), np.tile(starts, (len(held), 1)), loss)
    zs = zs.reshape(len(held), len(starts), -1)
    costs = np.where(np.isfinite(costs), costs, np.inf).reshape(len(held), len(starts))
    best = zs[np.arange(len(held)), np.argmin(costs, axis=1)]
    pred = law.predict_z(best, x, y)[np.arange(len(held)), held]
    errs = _relative(pred, e[held])
    if not len(errs):
        return None, None
    return float(np.mean(errs)), float(np.max(errs))


def _holdout_largest(form, n, v, e, loss, kind) -> float | None:
    """Fit on every LLM size but the largest, predict the largest (the study's 14B check)."""
    test = n == n.max()
    train = ~test
    try:
        params = fit_params(n[train], v[train], e[train], form, loss, kind=kind)
    except FitError:
        return None
    errs = _relative(predict(form, params, n[test], v[test]), e[test])
    return float(np.mean(errs)) if len(errs) else None

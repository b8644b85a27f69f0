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
held-out points are weight vectors over the same data), so 1000 replicates of a grid take about a
second.

Large tables (a pool of runs, a sweep logged per step) fit in bounded memory and time: the solver
works in chunks of problems × points (``solve.CHUNK_ELEMENTS``); above ``SCREEN_ROWS`` points the
starts are screened on a subsample; above a few thousand points cross-validation is k-fold and the
bootstrap a bag of little bootstraps (``resample``). The fit reports its folds and subset size
(bench/fit_size.py: rows, seconds, peak RSS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .forms import FORMS, METRIC_KINDS, FitError, predict, reference_point
from . import resample
from .solve import HUBER_DELTA, LOG_FLOOR, LOSSES, best_of, loss_of, objective_of, solve_batch, solve_chunked

__all__ = ["Fit", "LOSSES", "HUBER_DELTA", "LOG_FLOOR", "check_data", "fit_law", "fit_map", "fit_params"]

SCREEN_ROWS = 20_000  # above: the starts are screened on a subsample of this many points


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
    subset: int = 0  # points per bootstrap subset: n_points (the case bootstrap) or b (little bootstraps)
    folds: int = 0  # cross-validation folds (n_points: leave-one-out; 0: none)

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


def _fit_z(form: str, n, v, e, loss: str, n0: float, v0: float) -> np.ndarray:
    """The best fit from the law's grid of starts. Above ``SCREEN_ROWS`` points the starts are
    screened on a seeded subsample and the best two refined on every point: the basin is found
    from a few thousand points, and the full table is touched by two solves, not the whole grid."""
    law = FORMS[form]
    loss_of(loss)
    x, y = np.log(n / n0), np.log(v / v0)
    starts = np.array(law.starts(e))
    if len(e) > SCREEN_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(len(e), SCREEN_ROWS, replace=False))
        z, cost = solve_batch(law, x[pick], y[pick], e[pick], np.ones((len(starts), SCREEN_ROWS)), starts, loss)
        starts = z[np.argsort(np.where(np.isfinite(cost), cost, np.inf))[:2]]
    return best_of(law, x, y, e, np.ones(len(e)), starts, loss)


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
    z, cost = solve_chunked(law, x, y, e, lambda i, j: np.ones((j - i, len(e))), starts, loss, prior=prior)
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
    r, _, w = objective_of(law, z[None], x, y, e, np.ones((1, len(e))), loss)
    objective = loss_of(loss).objective(r, w, sse)
    spread = float(np.sum((e - e.mean()) ** 2))
    r2 = 1.0 - sse / spread if spread > 0 else float("nan")

    zs, failures = resample.bootstrap(law, x, y, n, v, e, z, loss, bootstrap, seed)
    boot = np.array([[law.to_params(zb, n0, v0)[p] for p in law.params] for zb in zs],
                    dtype=float).reshape(len(zs), len(law.params))
    tail = (1 - ci_level) / 2
    ci = {p: ((float(np.quantile(boot[:, i], tail)), float(np.quantile(boot[:, i], 1 - tail)))
              if len(boot) else (float("nan"), float("nan"))) for i, p in enumerate(law.params)}

    loo = loo_max = holdout = None
    if cross_validate:
        loo, loo_max = resample.cross_validate(law, x, y, n, v, e, z, loss, seed)
        holdout = _holdout_largest(form, n, v, e, loss, kind)
    return Fit(form, loss, params, ci, ci_level, sse, objective, float(np.sqrt(sse / len(e))), r2, len(e), loo,
               loo_max, holdout, boot, failures, kind, int(METRIC_KINDS[kind].at_bound(e).sum()),
               subset=resample.subset_size(len(e)),
               folds=resample.folds(len(e)) if cross_validate else 0)


def _holdout_largest(form, n, v, e, loss, kind) -> float | None:
    """Fit on every LLM size but the largest, predict the largest (the study's 14B check)."""
    test = n == n.max()
    train = ~test
    try:
        params = fit_params(n[train], v[train], e[train], form, loss, kind=kind)
    except FitError:
        return None
    errs = resample.relative(predict(form, params, n[test], v[test]), e[test])
    return float(np.mean(errs)) if len(errs) else None

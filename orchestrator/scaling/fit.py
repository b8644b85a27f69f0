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

from . import resample
from .forms import FORMS, METRIC_KINDS, FitError, LawForm, predict
from .forms import law as law_of
from .solve import HUBER_DELTA, LOG_FLOOR, LOSSES, best_of, loss_of, objective_of, solve_batch, solve_chunked

__all__ = ["Fit", "LOSSES", "HUBER_DELTA", "LOG_FLOOR", "check_data", "check_inputs", "fit_inputs", "fit_law",
           "fit_map", "fit_map_inputs", "fit_params"]

SCREEN_ROWS = 20_000  # above: the starts are screened on a subsample of this many points
SCREEN_STARTS = 128  # a law offering more starts (an expression's quasi-random ones) has the best this many descended
SEARCH_ROWS = 1_000  # ... on at most this many points,
REFINE = 4  # ... and the best of those on every point


# ------------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class FitSettings:
    """How a law is fitted: the objective (``LOSSES``), the bootstrap (replicates, seed, the
    interval's coverage), whether to cross-validate, and the metric's kind (``METRIC_KINDS``)."""

    loss: str = "squared"
    bootstrap: int = 1000
    seed: int = 0
    ci_level: float = 0.9
    cross_validate: bool = True
    kind: str = "error"


@dataclass(frozen=True)
class Fit:
    form: str  # the law's name
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
    bootstrap: np.ndarray = field(repr=False)  # [B, k] parameter samples (original units, the law's order)
    bootstrap_failures: int = 0
    kind: str = "error"
    at_bound: int = 0  # points at a bound of the metric's range (an error of exactly 0 or 1)
    subset: int = 0  # points per bootstrap subset: n_points (the case bootstrap) or b (little bootstraps)
    folds: int = 0  # cross-validation folds (n_points: leave-one-out; 0: none)
    law_obj: LawForm | None = field(default=None, repr=False)  # the law itself (None: FORMS[form])

    @property
    def law(self) -> LawForm:
        return self.law_obj if self.law_obj is not None else FORMS[self.form]

    def predict(self, *inputs) -> np.ndarray:
        return predict(self.law, self.params, *inputs)

    def bootstrap_params(self) -> list[dict[str, float]]:
        names = self.law.params
        return [dict(zip(names, row)) for row in self.bootstrap]

    @property
    def residual_variance(self) -> float:
        k = len(self.params)
        return self.sse / max(self.n_points - k, 1)


# what the built-in laws call their two inputs in messages (a VLM grid's, or a table's columns)
INPUT_LABELS = {0: ("llm_params", "LLM size", "N exponent", "add another LLM"),
                1: ("visual_tokens", "number of visual tokens", "V exponent", "add another visual_tokens value")}


def check_inputs(raw, e, form: str | LawForm, kind: str = "error") -> tuple[np.ndarray, np.ndarray]:
    """(raw [d, n], e) as float arrays, or a FitError saying what cannot identify the law."""
    if kind not in METRIC_KINDS:
        raise FitError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    law = law_of(form)
    raw = np.atleast_2d(np.asarray(raw, dtype=float))
    e = np.asarray(e, dtype=float).ravel()
    if raw.shape != (len(law.inputs), len(e)):
        names = ", ".join(INPUT_LABELS[i][0] for i in range(2)) if law.positional else ", ".join(law.inputs)
        raise FitError(f"{names} and the metric must have the same length")
    if not (np.all(np.isfinite(raw)) and np.all(np.isfinite(e))):
        raise FitError("the data holds NaN or infinite values; drop or fix those cells")
    why = law.check_raw(raw)
    if why:
        raise FitError(why)
    outside = METRIC_KINDS[kind].outside(e)
    if outside.any():
        if kind == "error":
            raise FitError(f"an error rate must lie between 0 and 1 (found {e[outside][0]:g}); a loss needs "
                           "--metric-kind loss")
        raise FitError(f"a loss must be positive (found {e[outside][0]:g}); a metric that may be negative or 0 "
                       "needs --metric-kind value")
    k = len(law.params)
    if len(e) <= k:
        raise FitError(f"{len(e)} points cannot identify the {law.name} law's {k} parameters; run at least {k + 1} cells")
    for i, row in enumerate(raw):
        if len(np.unique(row)) < 2:
            if law.positional:
                _, what, exponent, fix = INPUT_LABELS[i]
                raise FitError(f"all cells have the same {what}: the {exponent} is not identifiable; {fix}")
            raise FitError(f"every row has the same {law.inputs[i]}: the law cannot be fitted along it; add rows "
                           f"with other values of {law.inputs[i]}")
    return raw, e


def check_data(n, v, e, form: str | LawForm, kind: str = "error") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`check_inputs` for a two-input law (N and V, or a table's two columns)."""
    n, v = (np.asarray(a, dtype=float).ravel() for a in (n, v))
    law_of(form)  # an unknown name is refused before the data is looked at
    if not (len(n) == len(v) == len(np.ravel(e))):
        raise FitError("llm_params, visual_tokens and error must have the same length")
    raw, e = check_inputs(np.stack([n, v]), e, form, kind)
    return raw[0], raw[1], e


def _fit_z(law: LawForm, X, e, loss: str) -> np.ndarray:
    """The best fit from the law's grid of starts. Above ``SCREEN_ROWS`` points the starts are
    screened on a seeded subsample and the best two refined on every point: the basin is found
    from a few thousand points, and the full table is touched by two solves, not the whole grid."""
    loss_of(loss)
    starts = np.array(law.starts(e))
    if len(starts) > SCREEN_STARTS:  # many quasi-random starts (an expression's): a search in three phases
        return _search(law, X, e, starts, loss)
    if len(e) > SCREEN_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(len(e), SCREEN_ROWS, replace=False))
        z, cost = solve_batch(law, X[:, pick], e[pick], np.ones((len(starts), SCREEN_ROWS)), starts, loss)
        starts = z[np.argsort(np.where(np.isfinite(cost), cost, np.inf))[:2]]
    return best_of(law, X, e, np.ones(len(e)), starts, loss)


def _subsample(rows: int, size: int) -> np.ndarray:
    return np.arange(rows) if rows <= size else np.sort(np.random.default_rng(0).choice(rows, size, replace=False))


def _search(law: LawForm, X, e, starts: np.ndarray, loss: str) -> np.ndarray:
    """A global search for a law with many quasi-random starts (an expression's), whose cost
    surface is cheap to evaluate and hard to descend: (1) every start's cost on a subsample, the
    ``SCREEN_STARTS`` best kept (the box's centre always); (2) those descended on at most
    ``SEARCH_ROWS`` points; (3) the best ``REFINE`` of them descended on every point."""
    pick = _subsample(len(e), SEARCH_ROWS)
    Xs, es = X[:, pick], e[pick]
    with np.errstate(all="ignore"):
        r = loss_of(loss).residual(law.predict_z(starts, Xs), es)
        cost = np.sum(r * r, axis=-1)
    order = np.argsort(np.where(np.isfinite(cost), cost, np.inf), kind="stable")
    kept = starts[np.concatenate([[0], order[order != 0]])[:SCREEN_STARTS]]
    z, cost = solve_batch(law, Xs, es, np.ones((len(kept), len(es))), kept, loss)
    best = z[np.argsort(np.where(np.isfinite(cost), cost, np.inf), kind="stable")[:REFINE]]
    return best_of(law, X, e, np.ones(len(e)), best, loss)


def fit_inputs_params(raw, e, form: str | LawForm = "multiplicative", loss: str = "squared",
                      kind: str = "error") -> dict[str, float]:
    """The best-fitting parameters only (no uncertainty), for inputs ``raw`` [d, n]."""
    law = law_of(form)
    raw, e = check_inputs(raw, e, law, kind)
    ref = law.reference(raw)
    return law.to_params(_fit_z(law, law.coords(raw, ref), e, loss), ref)


def fit_params(n, v, e, form: str | LawForm = "multiplicative", loss: str = "squared",
               kind: str = "error") -> dict[str, float]:
    """The best-fitting parameters only (no uncertainty)."""
    n, v, e = check_data(n, v, e, form, kind)
    return fit_inputs_params(np.stack([n, v]), e, form, loss, kind)


def fit_map_inputs(raw, e, form: str | LawForm = "multiplicative", loss: str = "squared", kind: str = "error",
                   strength: float = 1e-4, reference=None) -> dict[str, float]:
    """A maximum a posteriori fit that any number of points ≥ 1 defines: least squares plus
    ½λ‖z − z̄‖² with λ = strength · mean(e)², z̄ the middle of the starting grid (moderate
    exponents, d half the smallest value) in coordinates normalised by ``reference`` (default the
    data's own). With points enough to identify the law, the prior barely moves it.
    """
    if kind not in METRIC_KINDS:
        raise FitError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    law = law_of(form)
    raw = np.atleast_2d(np.asarray(raw, dtype=float))
    e = np.asarray(e, dtype=float).ravel()
    admissible = np.all(np.isfinite(e)) and not METRIC_KINDS[kind].outside(e).any()
    if not len(e) or law.check_raw(raw) or not np.all(np.isfinite(raw)) or not admissible:
        raise FitError(f"a MAP fit needs at least one point with positive inputs and a metric in "
                       f"{METRIC_KINDS[kind].interval}")
    ref = reference if reference is not None else law.reference(raw)
    X = law.coords(raw, ref)
    starts = np.array(law.starts(e))
    prior = (law.prior_centre(e), strength * float(np.mean(e)) ** 2)
    if len(starts) > SCREEN_STARTS:  # an expression's many starts: the best by their penalised cost descended
        with np.errstate(all="ignore"):
            r = loss_of(loss).residual(law.predict_z(starts, X), e)
            cost = np.sum(r * r, axis=-1) + prior[1] * np.sum((starts - prior[0]) ** 2, axis=-1)
        starts = starts[np.argsort(np.where(np.isfinite(cost), cost, np.inf), kind="stable")[:REFINE * 4]]
    z, cost = solve_chunked(law, X, e, lambda i, j: np.ones((j - i, len(e))), starts, loss, prior=prior)
    return law.to_params(z[int(np.argmin(np.where(np.isfinite(cost), cost, np.inf)))], ref)


def fit_map(n, v, e, form: str | LawForm = "multiplicative", loss: str = "squared", kind: str = "error",
            strength: float = 1e-4, reference: tuple[float, float] | None = None) -> dict[str, float]:
    """:func:`fit_map_inputs` for a two-input law."""
    n, v = (np.asarray(a, dtype=float).ravel() for a in (n, v))
    return fit_map_inputs(np.stack([n, v]), e, form, loss, kind, strength, reference)


def fit_inputs(raw, e, form: str | LawForm = "multiplicative", settings: FitSettings = FitSettings()) -> Fit:
    """Fit the law over inputs ``raw`` [d, n] with bootstrap intervals and out-of-sample errors
    (see module docstring). ``settings.kind`` is the metric's (``METRIC_KINDS``); ``ci_level`` the
    bootstrap interval's coverage; ``cross_validate`` adds leave-one-out and hold-out-the-largest
    errors (the largest value of the first input: the largest LLM)."""
    loss, bootstrap, seed, ci_level = settings.loss, settings.bootstrap, settings.seed, settings.ci_level
    cross_validate, kind = settings.cross_validate, settings.kind
    if not 0 < ci_level < 1:
        raise FitError(f"the interval level must lie strictly between 0 and 1, got {ci_level:g}")
    law = law_of(form)
    raw, e = check_inputs(raw, e, law, kind)
    ref = law.reference(raw)
    X = law.coords(raw, ref)
    z = _fit_z(law, X, e, loss)
    params = law.to_params(z, ref)
    residuals = predict(law, params, *raw) - e
    sse = float(np.sum(residuals ** 2))
    r, _, w = objective_of(law, z[None], X, e, np.ones((1, len(e))), loss)
    objective = loss_of(loss).objective(r, w, sse)
    spread = float(np.sum((e - e.mean()) ** 2))
    r2 = 1.0 - sse / spread if spread > 0 else float("nan")

    zs, failures = resample.bootstrap(law, X, raw, e, z, loss, bootstrap, seed)
    boot = np.array([[law.to_params(zb, ref)[p] for p in law.params] for zb in zs],
                    dtype=float).reshape(len(zs), len(law.params))
    tail = (1 - ci_level) / 2
    ci = {p: ((float(np.quantile(boot[:, i], tail)), float(np.quantile(boot[:, i], 1 - tail)))
              if len(boot) else (float("nan"), float("nan"))) for i, p in enumerate(law.params)}

    loo = loo_max = holdout = None
    if cross_validate:
        loo, loo_max = resample.cross_validate(law, X, raw, e, z, loss, seed)
        holdout = _holdout_largest(law, raw, e, loss, kind, z if len(law.starts(e)) > SCREEN_STARTS else None)
    return Fit(law.name, loss, params, ci, ci_level, sse, objective, float(np.sqrt(sse / len(e))), r2, len(e), loo,
               loo_max, holdout, boot, failures, kind, int(METRIC_KINDS[kind].at_bound(e).sum()),
               subset=resample.subset_size(len(e), law.exact_rows),
               folds=resample.folds(len(e), law.exact_rows) if cross_validate else 0,
               law_obj=None if FORMS.get(law.name) is law else law)


def fit_law(n, v, e, form: str | LawForm = "multiplicative", settings: FitSettings = FitSettings()) -> Fit:
    """:func:`fit_inputs` for a two-input law: N and V (or a table's two columns)."""
    n, v, e = check_data(n, v, e, form, settings.kind)
    return fit_inputs(np.stack([n, v]), e, form, settings)


def _holdout_largest(law: LawForm, raw, e, loss, kind, warm: np.ndarray | None = None) -> float | None:
    """Fit on every value of the first input but the largest, predict the largest (the study's
    14B check). ``warm``: start from the full fit (a law whose global search is costly) rather
    than search again."""
    test = raw[0] == raw[0].max()
    train = ~test
    try:
        if warm is None:
            params = fit_inputs_params(raw[:, train], e[train], law, loss, kind=kind)
        else:
            check_inputs(raw[:, train], e[train], law, kind)
            ref = law.reference(raw[:, train])
            z = best_of(law, law.coords(raw[:, train], ref), e[train], np.ones(int(train.sum())), warm[None], loss)
            params = law.to_params(z, ref)
    except FitError:
        return None
    errs = resample.relative(predict(law, params, *raw[:, test]), e[test])
    return float(np.mean(errs)) if len(errs) else None

"""Uncertainty and out-of-sample error by resampling, at any table size. Pure numpy.

Bootstrap. Up to ``LITTLE_ROWS`` points (a law's ``exact_rows``: fewer for an expression, whose
every refit costs more): the case bootstrap — B replicates, each the data
resampled with replacement (multinomial counts w ~ Mult(n, 1/n) as weights) and refitted from the
full fit and two grid starts. Above: the bag of little bootstraps (Kleiner et al., 2014), which
keeps the case bootstrap's answer at a fraction of its work — s = ``SUBSETS`` subsets of
b = min(n^γ, ``SUBSET_MAX``) points (γ = ``GAMMA``) drawn without replacement; in subset j,
r = ⌈B / s⌉ replicates with weights w ~ Mult(n, 1/b) over its b points (each a resample of size
n) are refitted; θ̃_j is the subset's own fit. Replicate i of subset j is recentred on the full
fit, in the solver's coordinates z (log coefficient, exponents, floor):

    z*_ij ← ẑ + (z*_ij − z̃_j)

so pooled, the s·r replicates spread as the estimator does at n points around the full fit, and
percentile intervals read off them as from the case bootstrap. Every solve is over b points, not n.

Cross-validation. Up to ``LOO_ROWS`` points, leave-one-out; above, ``CV_FOLDS`` seeded folds. Each
fold's fit starts from the full fit (one point or one tenth moves the optimum little) and
predicts the points it did not see; the mean and max relative error |ê − e| / e are reported
(over points above 0). A fold or replicate whose remaining points cannot identify the law (one
value of an input: one LLM size or one token count) is skipped and counted.
"""

from __future__ import annotations

import numpy as np

from .forms import LawForm
from .solve import CHUNK_ELEMENTS, solve_chunked

LITTLE_ROWS = 2_000  # above: the bag of little bootstraps
SUBSETS = 10
GAMMA = 0.7
SUBSET_MAX = 20_000
LOO_ROWS = 2_000  # above: CV_FOLDS-fold cross-validation instead of leave-one-out
CV_FOLDS = 10


def folds(rows: int, exact_rows: int = LOO_ROWS) -> int:
    """Cross-validation folds: one per point up to ``exact_rows`` (the law's; ``LOO_ROWS`` for the
    built-ins), ``CV_FOLDS`` above."""
    return rows if rows <= exact_rows else CV_FOLDS


def subset_size(rows: int, exact_rows: int = LITTLE_ROWS) -> int:
    """b, the points of each little bootstrap's subset (``rows`` itself for the case bootstrap)."""
    return rows if rows <= exact_rows else int(min(rows ** GAMMA, SUBSET_MAX))


def relative(pred: np.ndarray, e: np.ndarray) -> np.ndarray:
    """|ê − e| / e over the points above 0 (an observed 0 has no relative error)."""
    keep = e > 0
    return np.abs(pred[keep] - e[keep]) / e[keep]


def levels(raw: np.ndarray) -> list[np.ndarray]:
    """Each input's values as level indices (what identifiability is checked on)."""
    return [np.unique(r, return_inverse=True)[1] for r in raw]


def _usable(levels_of: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Which weight rows [B, n] keep ≥ 2 distinct values of every input (the law stays identifiable:
    for a VLM grid, ≥ 2 LLM sizes and ≥ 2 token counts)."""
    def distinct(lv):
        return np.array([np.count_nonzero(np.bincount(lv, weights=row)) for row in w], dtype=int)
    ok = np.ones(len(w), bool)
    for lv in levels_of:
        ok &= distinct(lv) >= 2
    return ok


def _refit(law: LawForm, X, e, counts: np.ndarray, starts: np.ndarray, loss: str) -> np.ndarray:
    """The best of ``starts`` for each weight row of ``counts`` (solved a chunk at a time)."""
    s = len(starts)
    weights = np.repeat(counts, s, axis=0)  # one row per (replicate, start), made once, sliced per chunk
    zs, costs = solve_chunked(law, X, e, lambda a, b: weights[a:b], np.tile(starts, (len(counts), 1)), loss)
    zs = zs.reshape(len(counts), s, -1)
    costs = np.where(np.isfinite(costs), costs, np.inf).reshape(len(counts), s)
    return zs[np.arange(len(counts)), np.argmin(costs, axis=1)]


def bootstrap(law: LawForm, X, raw, e, z_full: np.ndarray, loss: str, count: int,
              seed: int) -> tuple[np.ndarray, int]:
    """``count`` bootstrap replicates in the solver's coordinates [B', k] and how many were
    unusable (see the module docstring for which bootstrap a table of this size gets)."""
    if count <= 0:
        return np.zeros((0, len(z_full))), 0
    rng = np.random.default_rng(seed)
    if len(e) <= law.exact_rows:
        if not law.grid_starts:  # quasi-random starts (an expression's): only the full fit is a useful one
            return _case(law, X, raw, e, z_full[None], loss, count, rng)
        grid = np.array(law.starts(e))
        return _case(law, X, raw, e, np.array([z_full, grid[len(grid) // 2], grid[-1]]), loss, count, rng)
    return _little(law, X, raw, e, z_full, loss, count, rng)


def _case(law, X, raw, e, starts, loss, count, rng) -> tuple[np.ndarray, int]:
    levels_of = levels(raw)
    per = max(1, CHUNK_ELEMENTS // (len(e) * len(starts)))
    out, failures = [], 0
    for i in range(0, count, per):  # counts drawn a chunk at a time, in one order (seeded)
        counts = np.array([np.bincount(rng.integers(0, len(e), len(e)), minlength=len(e))
                           for _ in range(min(per, count - i))], dtype=float)
        ok = _usable(levels_of, counts)
        failures += int((~ok).sum())
        if ok.any():
            out.append(_refit(law, X, e, counts[ok], starts, loss))
    return (np.concatenate(out) if out else np.zeros((0, starts.shape[1]))), failures


def _little(law, X, raw, e, z_full, loss, count, rng) -> tuple[np.ndarray, int]:
    b = subset_size(len(e), law.exact_rows)
    per_subset = -(-count // SUBSETS)
    out, failures = [], 0
    for _ in range(SUBSETS):
        pick = np.sort(rng.choice(len(e), b, replace=False))
        Xs, es = X[:, pick], e[pick]
        levels_of = levels(raw[:, pick])
        if not _usable(levels_of, np.ones((1, b)))[0]:
            failures += per_subset
            continue
        z_sub = _refit(law, Xs, es, np.ones((1, b)), z_full[None], loss)[0]
        counts = rng.multinomial(len(e), np.full(b, 1.0 / b), size=per_subset).astype(float)
        ok = _usable(levels_of, counts)
        failures += int((~ok).sum())
        if ok.any():
            out.append(z_full + (_refit(law, Xs, es, counts[ok], z_sub[None], loss) - z_sub))
    if not out:
        return np.zeros((0, len(z_full))), failures
    lo, hi = law.bounds(float(e.min()))
    return np.clip(np.concatenate(out), lo, hi), failures


def cross_validate(law: LawForm, X, raw, e, z_full: np.ndarray, loss: str,
                   seed: int) -> tuple[float | None, float | None]:
    """(mean, max) relative error of the points predicted by fits that did not see them."""
    k = folds(len(e), law.exact_rows)
    fold_of = np.arange(len(e)) if k == len(e) else np.random.default_rng(seed).permutation(len(e)) % k
    levels_of = levels(raw)

    def without(which: np.ndarray) -> np.ndarray:  # weights [len(which), n]: 0 on each fold's points
        return (fold_of[None, :] != which[:, None]).astype(float)

    per = max(1, CHUNK_ELEMENTS // len(e))
    held = np.flatnonzero(len(e) - np.bincount(fold_of, minlength=k) > len(law.params))
    held = np.concatenate([held[i:i + per][_usable(levels_of, without(held[i:i + per]))]
                           for i in range(0, len(held), per)] or [held])
    if not len(held):
        return None, None
    zs, _ = solve_chunked(law, X, e, lambda a, b: without(held[a:b]), np.tile(z_full[None], (len(held), 1)), loss)
    members = np.split(np.argsort(fold_of, kind="stable"), np.cumsum(np.bincount(fold_of, minlength=k))[:-1])
    errs = np.concatenate([relative(law.predict_z(zs[i:i + 1], X[:, members[f]])[0], e[members[f]])
                           for i, f in enumerate(held)])
    if not len(errs):
        return None, None
    return float(np.mean(errs)), float(np.max(errs))

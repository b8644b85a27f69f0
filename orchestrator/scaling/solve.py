"""The solver every fit shares: losses and a projected Levenberg–Marquardt batched over problems.

A problem is a weight vector over one data set (a start, a bootstrap replicate, a held-out fold);
B problems of n points are solved at once, in chunks of at most ``CHUNK_ELEMENTS`` = B·n so that
memory stays bounded whatever the table's size (the Jacobian is B·n·k floats). Problems are
independent, so a chunk's solutions equal what one big batch gives. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .forms import FitError, LawForm

HUBER_DELTA = 1e-3
LOG_FLOOR = 1e-4  # what a log-scale loss reads for an observed 0 (below any eval set's resolution)
CHUNK_ELEMENTS = 1_000_000  # problems × points per batched solve: ≈ 8·k MB per Jacobian


# losses: what the fit minimises (a registry: the spec's fit.loss and the CLI's --loss list it)


class Loss:
    name: str
    summary: str

    def residual(self, pred, e) -> np.ndarray:
        """The residuals [B, n] at predictions ``pred`` (what a trial step is judged by)."""
        raise NotImplementedError

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

    def residual(self, pred, e):
        return pred - e

    def residuals(self, pred, jac, e, w):
        return pred - e, jac, w

    def cost(self, r, w):
        return 0.5 * np.sum(w * r * r, axis=-1)

    def objective(self, r, w, sse):
        return 0.5 * sse


class HuberLog(Loss):
    name, summary = "huber_log", f"Σ Huber_δ(log ê − log e), δ = {HUBER_DELTA:g} (Chinchilla's approach 3)"

    def residual(self, pred, e):
        return np.log(np.maximum(pred, 1e-300)) - np.log(np.maximum(e, LOG_FLOOR))

    def residuals(self, pred, jac, e, w):
        r = self.residual(pred, e)
        pred = np.maximum(pred, 1e-300)
        huber = np.where(np.abs(r) <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(np.abs(r), 1e-300))
        return r, jac / pred[..., None], w * huber

    def cost(self, r, w):
        a = np.abs(r)
        rho = np.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))
        return np.sum(w * rho, axis=-1)


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (Squared(), HuberLog())}


def loss_of(name: str) -> Loss:
    try:
        return LOSSES[name]
    except KeyError:
        raise FitError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def objective_of(law: LawForm, z, X, e, w, loss: str):
    """Residuals [B, n], their Jacobian [B, n, k] and the IRLS weights for ``loss`` (X: the law's
    coordinates of the points, [d, n])."""
    return loss_of(loss).residuals(*law.value_and_jac(z, X), e, w)


def total_cost(r, w, loss: str) -> np.ndarray:
    return loss_of(loss).cost(r, w)


def solve_batch(law: LawForm, X, e, w, z0, loss: str, iters: int = 300,
                prior: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_solve_batch` with floating-point overflow quiet: a law written as an expression
    can overflow at a trial step, whose cost is then ∞ and the step rejected — not a warning."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _solve_batch(law, X, e, w, z0, loss, iters, prior)


def _solve_batch(law: LawForm, X, e, w, z0, loss: str, iters: int = 300,
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
        return total_cost(r, ww, loss) + 0.5 * lam * np.sum((zz - zbar) ** 2, axis=-1)

    visible = np.where(w > 0, e, np.inf)
    lo, hi = law.bounds(1.0)
    lo = np.broadcast_to(lo, z0.shape).copy()
    hi = np.broadcast_to(hi, z0.shape).copy()
    for index, cap in law.floor_limits(visible, X):
        hi[:, index] = cap * (1 - 1e-9)
    z = np.clip(z0, lo, hi)
    cost = total(loss_of(loss).residual(law.predict_z(z, X), e), w, z)
    damping = np.full(len(z), 1e-3)
    eye = np.eye(k)
    # the normal equations of each problem at its current z: made again only after z moved (a
    # rejected step raises the damping and reuses them — the Jacobian is the expensive part)
    a_of, g_of = np.zeros((len(z), k, k)), np.zeros((len(z), k))
    moved = np.ones(len(z), dtype=bool)
    active = np.arange(len(z))  # problems still moving; converged ones drop out of the batch
    for _ in range(iters):
        if not len(active):
            break
        stale = active[moved[active]]
        if len(stale):
            r, jac, wt = objective_of(law, z[stale], X, e, w[stale], loss)
            jw = (jac * wt[..., None]).transpose(0, 2, 1)
            a_of[stale] = np.matmul(jw, jac) + lam * eye
            g_of[stale] = np.matmul(jw, r[..., None])[..., 0] + lam * (z[stale] - zbar)
            moved[stale] = False
        za, wa, ca, da = z[active], w[active], cost[active], damping[active]
        a, g = a_of[active], g_of[active]
        diag = np.einsum("bkk->bk", a)
        lhs = a + (da[:, None] * np.maximum(diag, 1e-12))[:, :, None] * eye + 1e-12 * eye
        step = -np.linalg.solve(lhs, g[..., None])[..., 0]
        z_new = np.clip(za + step, lo[active], hi[active])
        c_new = total(loss_of(loss).residual(law.predict_z(z_new, X), e), wa, z_new)
        better = np.isfinite(c_new) & (c_new < ca)
        gain = np.where(better, (ca - c_new) / np.maximum(ca, 1e-300), 0.0)
        z[active] = np.where(better[:, None], z_new, za)
        cost[active] = np.where(better, c_new, ca)
        moved[active] = better
        damping[active] = np.where(better, np.maximum(da / 3, 1e-9), np.minimum(da * 4, 1e12))
        # converged: an accepted step that gained nothing, or a rejected one too small to matter
        tiny = np.max(np.abs(z_new - za), axis=1) <= 1e-12 * (1 + np.max(np.abs(za), axis=1))
        done = (better & (gain < law.tolerance)) | (~better & tiny) | (damping[active] >= 1e12)
        active = active[~done]
    return z, cost


def best_of(law, X, e, w_one: np.ndarray, starts: np.ndarray, loss: str) -> np.ndarray:
    """Solve one problem from many starts (batched) and keep the best."""
    z, cost = solve_chunked(law, X, e, lambda i, j: np.broadcast_to(w_one, (j - i, len(e))), starts, loss)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    if not np.isfinite(cost).any():
        raise FitError("no starting point converged; check the data")
    return z[int(np.argmin(cost))]


def solve_chunked(law: LawForm, X, e, weights: Callable[[int, int], np.ndarray], z0: np.ndarray, loss: str,
                  prior: tuple[np.ndarray, float] | None = None,
                  chunk: int = CHUNK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`solve_batch` (its default iterations) over ``len(z0)`` problems in chunks of ≤ ``chunk`` problem·points;
    ``weights(i, j)`` gives the weights [j − i, n] of problems i…j−1, made when their chunk is
    solved (a [B, n] array of a large table would not fit)."""
    per = max(1, chunk // max(len(e), 1))
    zs, costs = [], []
    for i in range(0, len(z0), per):
        j = min(i + per, len(z0))
        z, c = solve_batch(law, X, e, weights(i, j), z0[i:j], loss, prior=prior)
        zs.append(z)
        costs.append(c)
    if not zs:
        return np.zeros((0, z0.shape[-1])), np.zeros(0)
    return np.concatenate(zs), np.concatenate(costs)

"""Scaling-law forms: the interface every law implements, and the two built-in laws over two
positive inputs x₁, x₂ (N and V for a VLM grid; any two columns of a table). Pure numpy, no I/O.

    multiplicative   y(x₁, x₂) = a · x₁^-α · x₂^-β + d            (Li et al. 2025, the default)
    additive         y(x₁, x₂) = A · x₁^-α + B · x₂^-β + d          (Chinchilla's form)

A law sees its inputs as a matrix ``raw`` [d, n] (one row per input, in ``inputs`` order) and
works on an internal parameter vector z over its own coordinates ``X = coords(raw, ref)`` with
``ref = reference(raw)``: the built-ins use x = log(x₁/x₁₀), y = log(x₂/x₂₀) (x₁₀, x₂₀ the data's
geometric means, for conditioning) and coefficients as logarithms; a law written as an expression
(``expression.py``) works in raw units. ``to_params``/``from_params`` convert z to and from the
parameters in original units. The metric is an error rate in [0, 1] or a loss (any positive
value): ``METRIC_KINDS``.

``FORMS`` is the registry of named laws: a built-in is one :class:`LawForm` subclass registered
here; the spec's ``fit.form``, the CLI's ``--form`` and the reference docs list what it holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import TableError

EXPONENT_MAX = 3.0
LOG_COEF = (-30.0, 10.0)


class FitError(TableError, ValueError):
    """The data cannot identify the law; the message says why and what would."""


@dataclass(frozen=True)
class MetricKind:
    """What values a kind of metric may take. An error rate's bounds are observations (a small
    eval set scores 0 or 1); a loss must be positive."""

    name: str
    low: float
    high: float | None
    closed: bool  # the bounds themselves are admissible

    def outside(self, e: np.ndarray) -> np.ndarray:
        if self.closed:
            return (e < self.low) | ((e > self.high) if self.high is not None else False)
        return (e <= self.low) | ((e >= self.high) if self.high is not None else False)

    def at_bound(self, e: np.ndarray) -> np.ndarray:
        if not self.closed:
            return np.zeros(len(e), bool)
        return (e == self.low) | ((e == self.high) if self.high is not None else False)

    @property
    def interval(self) -> str:
        left, right = ("[", "]") if self.closed else ("(", ")")
        low = "−∞" if self.low == -np.inf else f"{self.low:g}"
        return f"{left}{low}, {'∞)' if self.high is None else f'{self.high:g}{right}'}"


METRIC_KINDS: dict[str, MetricKind] = {k.name: k for k in (MetricKind("error", 0.0, 1.0, closed=True),
                                                           MetricKind("loss", 0.0, None, closed=False),
                                                           MetricKind("value", -np.inf, None, closed=False))}


def metric_kind(metric: str) -> str:
    """The kind of a metric column by its name: ``*loss*`` is a loss, anything else an error rate."""
    return "loss" if "loss" in metric.lower() else "error"


# ------------------------------------------------------------------------------------------------
# law forms. Internal parameter vector z; normalised inputs x = log(N/N0), y = log(V/V0).


@dataclass(frozen=True)
class LawForm:
    name: str
    params: tuple[str, ...]
    equation: str
    summary: str = ""
    floor: str | None = "d"  # the parameter the fit keeps below the smallest observed value, if any
    inputs: tuple[str, ...] = ("N", "V")  # the law's inputs, in the order of raw's rows
    positional: bool = True  # inputs taken in order (a table's --inputs), not by name
    tolerance: float = 1e-10  # the solver stops a problem whose accepted step gains less than this (relative)
    grid_starts: bool = True  # starts on a grid whose middle and corner are worth a bootstrap replicate's try
    exact_rows: int = 2_000  # up to this many rows: the case bootstrap and leave-one-out (above: little, k-fold)

    @property
    def floor_index(self) -> int | None:
        return None if self.floor is None else self.params.index(self.floor)

    def predict(self, p: dict[str, float], *inputs: np.ndarray) -> np.ndarray:
        """The law in original units, elementwise over arrays (one per input)."""
        raise NotImplementedError

    def reference(self, raw: np.ndarray):
        """What the coordinates are normalised by, for data ``raw`` [d, n] (geometric means)."""
        return tuple(float(np.exp(np.log(np.asarray(r, float)).mean())) for r in raw)

    def coords(self, raw: np.ndarray, ref) -> np.ndarray:
        """The law's coordinates [d, n] of ``raw`` under reference ``ref``."""
        return np.stack([np.log(np.asarray(r, float) / r0) for r, r0 in zip(raw, ref)])

    def value_and_jac(self, z: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions [B, n] and their Jacobian [B, n, k] in z at once (a law may share work)."""
        return self.predict_z(z, X), self.jac_z(z, X)

    def check_raw(self, raw: np.ndarray) -> str | None:
        """Why inputs ``raw`` cannot be used (None when they can): the built-ins take logs."""
        if self.positional and np.any(np.asarray(raw) <= 0):
            return "llm_params and visual_tokens must be positive"
        return None

    def floor_limits(self, visible: np.ndarray, X: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(parameter index, its upper bound per problem [B]) for each floor parameter, given the
        values each problem sees (``visible`` [B, n], inf where a point is held out): a floor
        stays below the smallest value it must explain."""
        if self.floor_index is None:
            return []
        return [(self.floor_index, visible.min(axis=1))]

    def optimal_visual_tokens(self, p: dict[str, float], text_tokens: float, v_min: float, v_max: float
                              ) -> float | None:
        """V* at a binding FLOPs budget 2·N·(Q + V) + F₀, in closed form, clipped to [v_min, v_max];
        None for a form without one (the frontier's numerical search still applies)."""
        return None

    def predict_z(self, z: np.ndarray, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def jac_z(self, z: np.ndarray, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bounds(self, d_max: float) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def starts(self, e: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def prior_centre(self, e: np.ndarray) -> np.ndarray:
        """z̄ of a MAP fit's prior: the middle of the starting grid (moderate exponents)."""
        starts = self.starts(e)
        return np.asarray(starts[len(starts) // 2])

    def to_params(self, z: np.ndarray, ref) -> dict[str, float]:
        raise NotImplementedError

    def from_params(self, params: dict[str, float], ref) -> np.ndarray:
        """The inverse of ``to_params``."""
        raise NotImplementedError


def reference_point(n, v) -> tuple[float, float]:
    """(N0, V0): the geometric means the built-ins' coordinates are normalised by."""
    return float(np.exp(np.log(np.asarray(n, float)).mean())), float(np.exp(np.log(np.asarray(v, float)).mean()))


def closed_form_visual_tokens(alpha: float, beta: float, text_tokens: float, v_min: float, v_max: float) -> float:
    """V* of the multiplicative law at a binding FLOPs budget, clipped to [v_min, v_max].

    With N = (C − F₀) / (2(Q + V)): log error(V) = const + α·log(Q + V) − β·log V, so
    V* = β·Q / (α − β) for α > β, independent of C; the largest V when α ≤ β, the smallest when Q = 0.
    """
    if alpha <= beta:
        return v_max
    if text_tokens <= 0:
        return v_min
    return float(np.clip(beta * text_tokens / (alpha - beta), v_min, v_max))


class Multiplicative(LawForm):
    # z = (log a', α, β, d);  ê = exp(log a' − α x − β y) + d,  a = a' · N0^α · V0^β

    def predict(self, p, n, v):
        return p["a"] * n ** -p["alpha"] * v ** -p["beta"] + p["d"]

    def optimal_visual_tokens(self, p, text_tokens, v_min, v_max):
        return closed_form_visual_tokens(p["alpha"], p["beta"], text_tokens, v_min, v_max)

    def predict_z(self, z, X):
        x, y = X[0], X[1]
        z = z[..., None]
        return np.exp(z[..., 0, :] - z[..., 1, :] * x - z[..., 2, :] * y) + z[..., 3, :]

    def jac_z(self, z, X):
        x, y = X[0], X[1]
        z = z[..., None]
        t = np.exp(z[..., 0, :] - z[..., 1, :] * x - z[..., 2, :] * y)
        return np.stack([t, -t * x, -t * y, np.ones_like(t)], axis=-1)

    def bounds(self, d_max):
        return (np.array([LOG_COEF[0], 0.0, 0.0, 0.0]), np.array([LOG_COEF[1], EXPONENT_MAX, EXPONENT_MAX, d_max]))

    def starts(self, e):
        lo = float(e.min())
        out = []
        for alpha, beta, frac in itertools.product((0.05, 0.3, 1.0), (0.02, 0.2, 0.8), (0.0, 0.5, 0.9)):
            d = frac * lo
            out.append(np.array([np.log(max(float(np.mean(e)) - d, 1e-9)), alpha, beta, d]))
        return out

    def to_params(self, z, ref):
        n0, v0 = ref
        return {"a": float(np.exp(z[0] + z[1] * np.log(n0) + z[2] * np.log(v0))), "alpha": float(z[1]),
                "beta": float(z[2]), "d": float(z[3])}

    def from_params(self, p, ref):
        n0, v0 = ref
        return np.array([np.log(p["a"]) - p["alpha"] * np.log(n0) - p["beta"] * np.log(v0), p["alpha"], p["beta"],
                         p["d"]])


class Additive(LawForm):
    # z = (log A', α, log B', β, d);  ê = exp(log A' − α x) + exp(log B' − β y) + d

    def predict(self, p, n, v):
        return p["A"] * n ** -p["alpha"] + p["B"] * v ** -p["beta"] + p["d"]

    def predict_z(self, z, X):
        x, y = X[0], X[1]
        z = z[..., None]
        return np.exp(z[..., 0, :] - z[..., 1, :] * x) + np.exp(z[..., 2, :] - z[..., 3, :] * y) + z[..., 4, :]

    def jac_z(self, z, X):
        x, y = X[0], X[1]
        z = z[..., None]
        ta, tb = np.exp(z[..., 0, :] - z[..., 1, :] * x), np.exp(z[..., 2, :] - z[..., 3, :] * y)
        return np.stack([ta, -ta * x, tb, -tb * y, np.ones_like(ta)], axis=-1)

    def bounds(self, d_max):
        lo, hi = LOG_COEF
        return (np.array([lo, 0.0, lo, 0.0, 0.0]), np.array([hi, EXPONENT_MAX, hi, EXPONENT_MAX, d_max]))

    def starts(self, e):
        lo = float(e.min())
        out = []
        for alpha, beta, frac in itertools.product((0.05, 0.3, 1.0), (0.02, 0.2, 0.8), (0.0, 0.5, 0.9)):
            d = frac * lo
            half = np.log(max((float(np.mean(e)) - d) / 2, 1e-9))
            out.append(np.array([half, alpha, half, beta, d]))
        return out

    def to_params(self, z, ref):
        n0, v0 = ref
        return {"A": float(np.exp(z[0] + z[1] * np.log(n0))), "alpha": float(z[1]),
                "B": float(np.exp(z[2] + z[3] * np.log(v0))), "beta": float(z[3]), "d": float(z[4])}

    def from_params(self, p, ref):
        n0, v0 = ref
        return np.array([np.log(p["A"]) - p["alpha"] * np.log(n0), p["alpha"], np.log(p["B"]) - p["beta"] * np.log(v0),
                         p["beta"], p["d"]])


FORMS: dict[str, LawForm] = {}


def register(form: LawForm) -> LawForm:
    FORMS[form.name] = form
    return form


register(Multiplicative("multiplicative", ("a", "alpha", "beta", "d"), "error = a * N^-alpha * V^-beta + d",
                        "the study's law (Li et al. 2025), the default"))
register(Additive("additive", ("A", "alpha", "B", "beta", "d"), "error = A * N^-alpha + B * V^-beta + d",
                  "Chinchilla's form: each input's term falls on its own"))


def law(form: str | LawForm) -> LawForm:
    """A law by its registered name, or the law itself."""
    if isinstance(form, LawForm):
        return form
    try:
        return FORMS[form]
    except KeyError:
        raise FitError(f"unknown law form {form!r}; choose one of {', '.join(FORMS)}") from None


def predict(form: str | LawForm, params: dict[str, float], *inputs) -> np.ndarray:
    """The law ``form`` in original units, elementwise over arrays (one per input: N and V)."""
    return law(form).predict(params, *(np.asarray(x, dtype=float) for x in inputs))

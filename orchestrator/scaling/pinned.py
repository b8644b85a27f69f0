"""A law over more inputs than N and V, seen as a law of N and V alone: every other input held at
a value the user gives (``--at D=1e9``). The frontier, the proposals and the report work on N and
V; this view lets them use any law whose inputs include both.

    y(N, V) = f(N, V, x₃ = c₃, …)

The view evaluates the base law on its full input matrix (N and V in their slots, the pinned
values broadcast in the others), so its parameters, coordinates and Jacobian are the base law's.
Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

from .forms import FitError, LawForm

N_NAMES = ("N", "llm_params")
V_NAMES = ("V", "visual_tokens")


def nv_slots(law: LawForm) -> tuple[int, int] | None:
    """Where N and V sit among a law's inputs (None when it lacks either)."""
    if law.positional:
        return (0, 1) if len(law.inputs) == 2 else None
    n = next((i for i, name in enumerate(law.inputs) if name in N_NAMES), None)
    v = next((i for i, name in enumerate(law.inputs) if name in V_NAMES), None)
    return None if n is None or v is None else (n, v)


def parse_at(items: list[str] | tuple[str, ...] | None) -> dict[str, float]:
    """``["D=1e9", "U=2e8"]`` → {"D": 1e9, "U": 2e8}."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise FitError(f"--at {item!r}: give NAME=VALUE with a finite number, e.g. --at D=1e9")
        out[name.strip()] = number
    return out


class PinnedLaw(LawForm):
    # set once in __init__ (the base dataclass is frozen); declared for readers and type checkers
    base: LawForm
    slots: tuple[int, int]
    at: dict[str, float]

    def __init__(self, base: LawForm, at: dict[str, float]):
        slots = nv_slots(base)
        if slots is None:
            raise FitError(f"the {base.name} law's inputs ({', '.join(base.inputs)}) do not include N and V: "
                           "it has no compute-optimal frontier")
        others = [name for i, name in enumerate(base.inputs) if i not in slots]
        missing = [name for name in others if name not in at]
        if missing:
            raise FitError(f"the frontier needs a value for the law's input {missing[0]}: pass --at {missing[0]}=VALUE "
                           "(it is held there while N and V vary)")
        pinned = ", ".join(f"{name} = {at[name]:g}" for name in others)
        object.__setattr__(self, "name", base.name)
        object.__setattr__(self, "params", base.params)
        object.__setattr__(self, "equation", base.equation + (f"   at {pinned}" if pinned else ""))
        object.__setattr__(self, "summary", base.summary)
        object.__setattr__(self, "floor", base.floor)
        object.__setattr__(self, "inputs", ("N", "V"))
        object.__setattr__(self, "positional", True)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "slots", slots)
        for name in ("tolerance", "grid_starts", "exact_rows"):  # the base law's solver settings
            object.__setattr__(self, name, getattr(base, name))
        object.__setattr__(self, "at", {name: at[name] for name in others})

    def __hash__(self):
        return hash((self.name, self.params, tuple(self.at.items())))

    def full(self, raw) -> np.ndarray:
        """N and V rows [2, n] → the base law's input matrix [d, n]."""
        raw = np.atleast_2d(np.asarray(raw, float))
        out = np.empty((len(self.base.inputs), raw.shape[1]))
        for i, name in enumerate(self.base.inputs):
            out[i] = raw[0] if i == self.slots[0] else raw[1] if i == self.slots[1] else self.at[name]
        return out

    def predict(self, p, n, v):
        n, v = np.broadcast_arrays(np.asarray(n, float), np.asarray(v, float))
        return np.asarray(self.base.predict(p, *self.full(np.stack([n.ravel(), v.ravel()])))).reshape(n.shape)

    def reference(self, raw):
        return self.base.reference(self.full(raw))

    def coords(self, raw, ref):
        return self.base.coords(self.full(raw), ref)

    def predict_z(self, z, X):
        return self.base.predict_z(z, X)

    def value_and_jac(self, z, X):
        return self.base.value_and_jac(z, X)

    def jac_z(self, z, X):
        return self.base.jac_z(z, X)

    def check_raw(self, raw):
        return self.base.check_raw(self.full(raw))

    def floor_limits(self, visible, X):
        return self.base.floor_limits(visible, X)

    def bounds(self, d_max):
        return self.base.bounds(d_max)

    def starts(self, e):
        return self.base.starts(e)

    def to_params(self, z, ref):
        return self.base.to_params(z, ref)

    def from_params(self, p, ref):
        return self.base.from_params(p, ref)

    def optimal_visual_tokens(self, p, text_tokens, v_min, v_max):
        return self.base.optimal_visual_tokens(p, text_tokens, v_min, v_max) if not self.at else None

"""What the law predicts for a cell before it trains, and afterwards how right it was.

A round's cells are proposed because the law is unsure there; its forecast for each is written
before they train, so the next fit can say whether the law's intervals mean what they say.

The forecast of the metric y at a point x is the fit's prediction ŷ = f(x; θ̂) with a predictive
interval at the fit's level q::

    σ² = Var_b[f(x; θ_b)] + s²,   s² = SSE / max(n − k, 1)
    [ŷ − z σ, ŷ + z σ],           z = Φ⁻¹((1 + q) / 2)

— the spread of the bootstrap replicates' predictions (what the parameters do not pin down) plus
the residual variance (what a new cell adds on its own: seed noise, evaluation noise). The check
of a round compares each finished cell's measured value y with its forecast: the relative error
|y − ŷ| / |y| (its median over the round) and whether y fell inside the interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from .fit import Fit
from .forms import predict


@dataclass(frozen=True)
class Forecast:
    """The law's prediction ``value`` for one cell and its interval [``low``, ``high``] at ``level``."""

    value: float
    low: float
    high: float
    level: float

    def covers(self, observed: float) -> bool:
        return self.low <= observed <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Forecast:
        return cls(float(doc["value"]), float(doc["low"]), float(doc["high"]), float(doc["level"]))


def forecast(fit: Fit, n: float, v: float) -> Forecast:
    """The forecast at (N, V) (module docstring): the fit's prediction, its predictive interval at
    ``fit.ci_level`` from the bootstrap replicates and the residual variance."""
    value = float(predict(fit.law, fit.params, np.array([n], float), np.array([v], float))[0])
    boot = [float(predict(fit.law, p, np.array([n], float), np.array([v], float))[0]) for p in fit.bootstrap_params()]
    boot = [b for b in boot if np.isfinite(b)]
    spread = float(np.var(boot)) if len(boot) > 1 else 0.0
    sigma = float(np.sqrt(spread + fit.residual_variance))
    z = NormalDist().inv_cdf((1 + fit.ci_level) / 2)
    return Forecast(value, value - z * sigma, value + z * sigma, fit.ci_level)


@dataclass(frozen=True)
class ForecastCheck:
    """How a round's forecasts fared: of ``cells`` finished cells, the median relative error and
    how many fell ``inside`` their interval at ``level``."""

    round: int
    cells: int
    median_rel_error: float
    inside: int
    level: float

    def sentence(self) -> str:
        return (f"round {self.round}'s {self.cells} cell{'s' if self.cells != 1 else ''}: median forecast error "
                f"{100 * self.median_rel_error:.1f} %, {self.inside} of {self.cells} inside their "
                f"{100 * self.level:.0f} % interval")

    def as_dict(self) -> dict[str, float | int]:
        return {"round": self.round, "cells": self.cells, "median_rel_error": self.median_rel_error,
                "inside": self.inside, "level": self.level}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ForecastCheck:
        return cls(int(doc["round"]), int(doc["cells"]), float(doc["median_rel_error"]), int(doc["inside"]),
                   float(doc["level"]))


def check_forecasts(round_no: int, pairs: list[tuple[Forecast, float]]) -> ForecastCheck | None:
    """The check of a round from (forecast, measured value) of each of its finished cells; None
    when none has finished (or none has a forecast)."""
    pairs = [(f, y) for f, y in pairs if np.isfinite(y)]
    if not pairs:
        return None
    rel = [abs(y - f.value) / abs(y) if y != 0 else abs(y - f.value) for f, y in pairs]
    return ForecastCheck(round_no, len(pairs), float(np.median(rel)), sum(f.covers(y) for f, y in pairs),
                         pairs[0][0].level)

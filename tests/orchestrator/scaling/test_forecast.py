"""Forecasts and their check: the law's predictive interval covers new cells drawn from it about as
often as it says, and a round's check reports the median relative error and the share inside."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.scaling.fit import FitSettings, fit_law
from orchestrator.scaling.forecast import Forecast, ForecastCheck, check_forecasts, forecast
from orchestrator.scaling.forms import predict

N = np.repeat([2e4, 8e4, 3e5, 1.2e6], 5)
V = np.tile([1, 4, 16, 64, 144], 4)
TRUE = {"a": 2.0, "alpha": 0.15, "beta": 0.1, "d": 0.2}


def _draw(n, v, rng, noise):
    return predict("multiplicative", TRUE, n, v) * (1 + noise * rng.standard_normal(len(n)))


def test_the_predictive_interval_covers_new_cells_near_its_level():
    """20 grids, each fitted, each forecasting 6 new cells drawn from the same law and noise: the
    90 % intervals cover close to 90 % of them (the residual variance is most of the width)."""
    rng = np.random.default_rng(0)
    hits = total = 0
    new_n, new_v = np.array([5e6, 5e6, 1.2e6, 3e5, 8e4, 2e4]), np.array([1, 16, 36, 144, 4, 64])
    for seed in range(20):
        fit = fit_law(N, V, _draw(N, V, rng, 0.02), settings=FitSettings(bootstrap=100, seed=seed,
                                                                             cross_validate=False))
        observed = _draw(new_n, new_v, rng, 0.02)
        for n, v, y in zip(new_n, new_v, observed):
            f = forecast(fit, n, v)
            assert f.low < f.value < f.high and f.level == 0.9
            hits += f.covers(y)
            total += 1
    assert 0.8 <= hits / total <= 0.99, hits / total


def test_a_noiseless_law_is_forecast_tightly_and_exactly():
    e = predict("multiplicative", TRUE, N, V)
    fit = fit_law(N, V, e, settings=FitSettings(bootstrap=50, cross_validate=False))
    f = forecast(fit, 5e6, 16)
    truth = float(predict("multiplicative", TRUE, np.array([5e6]), np.array([16]))[0])
    assert f.value == pytest.approx(truth, rel=1e-4) and f.high - f.low < 1e-3 * truth


def test_a_rounds_check_counts_the_cells_inside_and_the_median_relative_error():
    forecasts = [Forecast(0.5, 0.45, 0.55, 0.9), Forecast(0.4, 0.38, 0.42, 0.9), Forecast(0.3, 0.2, 0.4, 0.9)]
    check = check_forecasts(2, list(zip(forecasts, [0.5, 0.44, 0.33])))
    assert check == ForecastCheck(2, 3, pytest.approx(0.0909, abs=1e-4), 2, 0.9)
    assert check.sentence() == "round 2's 3 cells: median forecast error 9.1 %, 2 of 3 inside their 90 % interval"
    assert ForecastCheck.from_dict(check.as_dict()) == check and Forecast.from_dict(forecasts[0].as_dict()) == forecasts[0]
    assert check_forecasts(3, []) is None and check_forecasts(3, [(forecasts[0], float("nan"))]) is None

"""Fit speed: 30 points with 1,000 bootstrap resamples (plus leave-one-out), per form and loss.

    python bench/fit_speed.py [--points 30] [--bootstrap 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.scaling.fit import FitSettings, fit_law  # noqa: E402
from orchestrator.scaling.forms import predict  # noqa: E402

TRUTH = {"multiplicative": {"a": 1.2, "alpha": 0.077, "beta": 0.015, "d": 0.15},
         "additive": {"A": 3.0, "alpha": 0.3, "B": 0.3, "beta": 0.4, "d": 0.2}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = np.geomspace(5e8, 3.2e10, 5)
    tokens = np.array([1, 4, 16, 36, 64, 144, 576], float)
    grid = np.array([(n, v) for n in sizes for v in tokens])[: a.points]
    print(f"{a.points} points, {a.bootstrap} bootstrap resamples, best of {a.repeats}")
    print(f"{'form':<15} {'loss':<10} {'fit+bootstrap':>14} {'+ leave-one-out':>16} {'per resample':>13}")
    for form, truth in TRUTH.items():
        e = predict(form, truth, grid[:, 0], grid[:, 1]) * (1 + 0.005 * rng.standard_normal(len(grid)))
        for loss in ("squared", "huber_log"):
            t_boot, t_all = [], []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                fit_law(grid[:, 0], grid[:, 1], e, form=form, settings=FitSettings(loss=loss, bootstrap=a.bootstrap, cross_validate=False))
                t1 = time.perf_counter()
                fit_law(grid[:, 0], grid[:, 1], e, form=form, settings=FitSettings(loss=loss, bootstrap=a.bootstrap))
                t2 = time.perf_counter()
                t_boot.append(t1 - t0)
                t_all.append(t2 - t1)
            print(f"{form:<15} {loss:<10} {min(t_boot):>12.2f} s {min(t_all):>14.2f} s "
                  f"{1e3 * min(t_boot) / a.bootstrap:>10.2f} ms")


if __name__ == "__main__":
    main()

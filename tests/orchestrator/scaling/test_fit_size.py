"""Fits of large tables: bounded memory, the same answer in chunks, k-fold and little bootstraps
that agree with leave-one-out and the case bootstrap (bench/fit_size.py measures 10^3…10^6 rows)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from orchestrator.scaling import resample
from orchestrator.scaling.fit import FitSettings, fit_law
from orchestrator.scaling.forms import FORMS, predict, reference_point
from orchestrator.scaling.solve import solve_chunked

ROOT = Path(__file__).resolve().parents[3]
TRUTH = {"a": 1.2, "alpha": 0.077, "beta": 0.015, "d": 0.15}


def _table(rows: int, seed: int = 0, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(5e8), np.log(7e9), rows))
    v = np.round(np.exp(rng.uniform(0, np.log(576), rows)))
    return n, v, predict("multiplicative", TRUTH, n, v) * (1 + noise * rng.standard_normal(rows))


def test_a_chunked_solve_is_the_one_batch_solve():
    n, v, e = _table(300)
    law = FORMS["multiplicative"]
    X = law.coords(np.stack([n, v]), reference_point(n, v))
    starts = np.array(law.starts(e))
    w = np.random.default_rng(1).integers(0, 3, (len(starts), len(e))).astype(float)
    whole = solve_chunked(law, X, e, lambda i, j: w[i:j], starts, "squared")
    pieces = solve_chunked(law, X, e, lambda i, j: w[i:j], starts, "squared", chunk=2 * len(e))  # 2 per chunk
    np.testing.assert_array_equal(whole[0], pieces[0])
    np.testing.assert_array_equal(whole[1], pieces[1])


def test_little_bootstraps_give_the_case_bootstraps_interval():
    n, v, e = _table(4000, seed=3)
    law = FORMS["multiplicative"]
    ref = reference_point(n, v)
    X = law.coords(np.stack([n, v]), ref)
    fit = fit_law(n, v, e, settings=FitSettings(bootstrap=300, cross_validate=False))
    assert fit.subset == resample.subset_size(4000) < 4000 and len(fit.bootstrap) == 300
    z = law.from_params(fit.params, ref)
    case, _ = resample._case(law, X, np.stack([n, v]), e, z[None], "squared", 300, np.random.default_rng(0))
    little = np.array([law.from_params(p, ref) for p in fit.bootstrap_params()])
    for i, name in enumerate(law.params):
        if name == "d" or name == "a":  # the floor and coefficient trade off; the exponents are what is read
            continue
        w_case = np.diff(np.quantile(case[:, i], [0.05, 0.95]))[0]
        w_little = np.diff(np.quantile(little[:, i], [0.05, 0.95]))[0]
        assert 0.7 < w_little / w_case < 1.4, (name, w_little, w_case)
        lo, hi = fit.ci[name]
        assert lo <= fit.params[name] <= hi


def test_above_a_few_thousand_rows_cross_validation_is_k_fold_and_agrees_with_the_noise():
    n, v, e = _table(5000, seed=4)
    fit = fit_law(n, v, e, settings=FitSettings(bootstrap=0))
    assert fit.folds == resample.CV_FOLDS
    # 1% multiplicative noise: the out-of-sample relative error is E|ε| ≈ 0.8%
    assert 0.006 < fit.loo_rel_error < 0.011
    small = fit_law(n[:200], v[:200], e[:200], settings=FitSettings(bootstrap=0))
    assert small.folds == 200 and 0.005 < small.loo_rel_error < 0.012


def test_a_200k_row_table_fits_from_the_command_line_in_bounded_memory(tmp_path):
    n, v, e = _table(200_000)
    path = tmp_path / "big.csv"
    np.savetxt(path, np.column_stack([n, v, e]), delimiter=",", header="llm_params,visual_tokens,error",
               comments="", fmt=["%.6e", "%d", "%.6f"])
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--format", "json"],
                                cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "err").read_text()
    peak = usage.ru_maxrss * 1024
    # before: leave-one-out's N × N × k array killed this at 23.7 GB; bench/fit_size.py measures ≈ 0.4 GB
    assert peak < 1.5 * 2 ** 30, f"peak RSS {peak / 2 ** 30:.2f} GB"
    fit = json.loads((tmp_path / "out").read_text())
    assert fit["n_points"] == 200_000 and fit["folds"] == resample.CV_FOLDS and fit["bootstrap"] == 1000
    for name in ("alpha", "beta"):
        lo, hi = fit["ci"][name]
        assert lo < TRUTH[name] < hi and hi - lo < 0.1 * TRUTH[name], (name, lo, hi)

"""A law written as an expression, at size: `vlmscale fit TABLE.csv --law …` with 1,000 bootstrap
replicates and cross-validation, on Farseer's 9-parameter law (ScaleBench's farseer task, its
benchmark's bounds) over 10^3…10^5 rows drawn from the law with 0.3 % noise — wall seconds, the
process's peak RSS, and the recovered parameters beside the truth.

    python bench/fit_law.py [--rows 1000,10000,100000] [--bootstrap 1000]

    L(N, D) = exp(s·N^q + S) + exp(B·N^b + Q) · D^(−exp(A·N^a + E))
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.scaling.expression import ExpressionLaw  # noqa: E402

EXPRESSION = "exp(s * N**q + S) + exp(B * N**b + Q) * D**(-exp(A * N**a + E))"
PARAMS = {"E": [1, 6], "s": [-1, 0.3], "q": [0.01, 0.5], "S": [-1, 1], "B": [10, 1000], "b": [-0.6, -0.01],
          "Q": [-5, 1], "A": [-5, 1], "a": [0.001, 0.25]}
TRUTH = {"E": 3.1333, "s": -0.06247, "q": 0.13, "S": 0.1285, "B": 230.73, "b": -0.1729, "Q": -1.5442,
         "A": -1.6656, "a": 0.0459}


def table(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e8), np.log(2.5e10), rows))
    d = np.exp(rng.uniform(np.log(1e9), np.log(5e11), rows))
    loss = ExpressionLaw(EXPRESSION, PARAMS).predict(TRUTH, n, d) * (1 + 0.003 * rng.standard_normal(rows))
    np.savetxt(path, np.column_stack([n, d, loss]), delimiter=",", header="N,D,loss", comments="", fmt="%.9e")


def run(path: Path, bootstrap: int) -> tuple[float, int, dict]:
    args = [sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--law", EXPRESSION, "--metric", "loss",
            "--bootstrap", str(bootstrap), "--format", "json"]
    for name, (lo, hi) in PARAMS.items():
        args += ["--param", f"{name}={lo},{hi}"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(err.read().decode()[-2000:])
        return seconds, usage.ru_maxrss * 1024, json.loads(out.read())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="1000,10000,100000")
    p.add_argument("--bootstrap", type=int, default=1000)
    a = p.parse_args(argv)
    print(f"Farseer's law, 9 parameters, {a.bootstrap} bootstrap replicates, cross-validation")
    print(f"{'rows':>8} {'seconds':>8} {'peak MB':>8} {'RMSE':>9} {'LOO':>7}  parameters (truth)")
    with tempfile.TemporaryDirectory() as d:
        for rows in (int(x) for x in a.rows.split(",")):
            path = Path(d) / f"farseer-{rows}.csv"
            table(path, rows)
            seconds, peak, fit = run(path, a.bootstrap)
            got = ", ".join(f"{k} {fit['params'][k]:.3g} ({v:.3g})" for k, v in TRUTH.items())
            print(f"{rows:>8} {seconds:>8.1f} {peak / 2**20:>8.0f} {fit['rmse']:>9.2e} "
                  f"{100 * (fit['loo_rel_error'] or 0):>6.2f}%  {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

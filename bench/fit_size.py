"""Fit size: `vlmscale fit TABLE.csv` with its defaults (1,000 bootstrap replicates asked, cross-
validation, the frontier) on tables of 10^3…10^6 rows — wall seconds and the process's peak RSS.

    python bench/fit_size.py [--rows 1000,10000,100000,200000,1000000] [--form multiplicative]

Each size runs in its own process (peak RSS is the kernel's, from wait4); the rows are a known law
(a = 1.2, α = 0.077, β = 0.015, d = 0.15) at log-uniform N and V with 1% noise, so the recovered
parameters are printed next to the truth. Target: 10^6 rows under 2 GB.
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

from orchestrator.scaling.forms import predict  # noqa: E402

TRUTH = {"multiplicative": {"a": 1.2, "alpha": 0.077, "beta": 0.015, "d": 0.15},
         "additive": {"A": 3.0, "alpha": 0.3, "B": 0.3, "beta": 0.4, "d": 0.2}}
TARGET_BYTES = 2 * 1024 ** 3


def table(path: Path, rows: int, form: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(5e8), np.log(7e9), rows))
    v = np.round(np.exp(rng.uniform(0, np.log(576), rows)))
    e = np.clip(predict(form, TRUTH[form], n, v) * (1 + 0.01 * rng.standard_normal(rows)), 0, 1)
    np.savetxt(path, np.column_stack([n, v, e]), delimiter=",", header="llm_params,visual_tokens,error",
               comments="", fmt=["%.6e", "%d", "%.6f"])


def run(path: Path, form: str) -> tuple[float, int, dict]:
    """(wall seconds, peak RSS bytes, the fit's JSON) of one `vlmscale fit` process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "fit", str(path), "--form", form,
                                 "--format", "json"], cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"fit of {path} exited {proc.returncode}: {err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, json.loads(out.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1000,10000,100000,200000,1000000")
    ap.add_argument("--form", default="multiplicative", choices=sorted(TRUTH))
    a = ap.parse_args()
    sizes = [int(float(s)) for s in a.rows.split(",")]
    names = list(TRUTH[a.form])
    print(f"vlmscale fit TABLE.csv --form {a.form} (defaults: 1000 bootstrap replicates, cross-validation)")
    print(f"truth: {TRUTH[a.form]}")
    print(f"{'rows':>9} {'seconds':>8} {'peak RSS':>9} {'replicates':>10} {'subset':>7} {'folds':>6} {'cv err':>7}  "
          f"params [90% CI of {names[1]}]")
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            path = Path(tmp) / f"t{rows}.csv"
            table(path, rows, a.form)
            wall, rss, fit = run(path, a.form)
            worst = max(worst, rss) if rows >= 1_000_000 else worst
            got = " ".join(f"{k}={fit['params'][k]:.4g}" for k in names)
            cv = "n/a" if fit["loo_rel_error"] is None else f"{100 * fit['loo_rel_error']:.2f}%"
            lo, hi = fit["ci"][names[1]]
            print(f"{rows:>9} {wall:>8.1f} {rss / 2 ** 20:>7.0f}MB {fit['bootstrap']:>10} {fit['bootstrap_subset']:>7} "
                  f"{fit['folds']:>6} {cv:>7}  {got} [{lo:.4g}, {hi:.4g}]", flush=True)
            path.unlink()
    if worst:
        print(f"10^6 rows: peak RSS {worst / 2 ** 30:.2f} GB; target < 2 GB: ratio {worst / TARGET_BYTES:.2f}")


if __name__ == "__main__":
    main()

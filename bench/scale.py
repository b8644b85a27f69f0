"""Per-cell overhead at scale: many near-empty cells through the whole machinery.

    python bench/scale.py                    # 100 and 300 cells
    python bench/scale.py --cells 100 1000 --json out.json

Each cell trains 1 step and evaluates 8 questions — next to nothing — but is scheduled by Tune,
gets its MLflow run (created, SCHEDULED, RUNNING, metrics, cell.json, FINISHED), its ledger record
and progress file, as in any experiment. Printed per grid size: wall time of ``vlmscale run``,
seconds per cell, the driver's peak memory, the MLflow store's size, and how each grows from the
smallest grid (1.0 = linear). Target: ≤ 0.5 s per cell on 2 cores.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402


def spec(storage: Path, cells: int) -> dict:
    return {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": f"scale-{cells}"},
        "spec": {
            "grid": {"llms": ["tiny-xs"], "visual_tokens": [1], "compressors": ["avgpool"], "tasks": ["shapes"],
                     "seeds": list(range(cells))},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 10}},
            "data": {"eval_size": 8, "train_size": 64},
            "training": {"steps": 1, "batch_size": 8, "checkpoint_every": 1, "log_every": 1},
            "storage": {"path": str(storage)},
            "fit": {"enabled": False},
        },
    }


def run(root: Path, cells: int) -> dict[str, float]:
    import psutil

    path = root / f"scale-{cells}.yaml"
    path.write_text(yaml.safe_dump(spec(root / "runs", cells)))
    t0 = time.perf_counter()
    log = root / f"scale-{cells}.log"  # a file, not a pipe: nobody reads a pipe while it runs
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--plain"], cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    driver, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, driver.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"vlmscale run failed:\n{out[-3000:]}")
    wall = time.perf_counter() - t0
    exp_dir = root / "runs" / f"scale-{cells}"
    store = sum(p.stat().st_size for p in exp_dir.glob("mlflow.db*"))
    store += sum(p.stat().st_size for p in (exp_dir / "mlartifacts").rglob("*") if p.is_file())
    done = len(list((exp_dir / "results").glob("*.json")))
    assert done == cells, f"{done} of {cells} cells finished"
    return {"cells": cells, "wall_s": wall, "s_per_cell": wall / cells, "driver_peak_rss_mb": peak / 2**20,
            "mlflow_store_mb": store / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in a.cells:
            rows.append(run(Path(d), n))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'cells':>6}{'wall':>9}{'s/cell':>8}{'driver MB':>11}{'MLflow MB':>11}   growth vs {base['cells']} "
          "(1.0 = linear): time, store")
    for r in rows:
        k = r["cells"] / base["cells"]
        print(f"{r['cells']:>6}{r['wall_s']:>8.0f}s{r['s_per_cell']:>8.2f}{r['driver_peak_rss_mb']:>11.0f}"
              f"{r['mlflow_store_mb']:>11.1f}   {r['wall_s'] / base['wall_s'] / k:.2f}, "
              f"{r['mlflow_store_mb'] / base['mlflow_store_mb'] / k:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

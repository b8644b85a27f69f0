"""What vlmscale costs on top of the work: one grid run three ways, against the ideal.

    python bench/orchestration.py                 # 12 cells (tiny-xs x V 1,4,16 x seeds 0-3), 100 steps
    python bench/orchestration.py --steps 300 --json out.json

(a) ``vlmscale run`` (local Ray, Tune, Ray Train, MLflow, ledger, progress) with its concurrency;
(b) a plain loop in one process — every cell's ``train_local`` in turn, the same training code
    with no orchestration: the sum of the cells' compute;
(c) one process per cell, ``slots`` at a time — how such studies are usually scripted.
The ideal is (b) ÷ slots: perfect packing of the same compute on the same cores. Printed: wall
times, ratios to the ideal, and where (a)'s extra time goes (start-up before the first cell
trains, the fit and the report after the last, the gaps between cells), and how busy the cores
were during (a)'s start: CPU-seconds spent before the first cell trains ÷ cores is the least any
overlap of that start could bring it down to.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402


def spec(storage: Path, steps: int, seeds: int) -> dict:
    return {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "overhead"},
        "spec": {
            "grid": {"llms": ["tiny-xs"], "visual_tokens": [1, 4, 16], "compressors": ["avgpool"],
                     "tasks": ["shapes"], "seeds": list(range(seeds))},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 50}},
            "data": {"eval_size": 128, "train_size": 4000},
            "training": {"steps": steps, "batch_size": 16, "checkpoint_every": max(steps // 2, 1),
                         "log_every": max(steps // 10, 1)},
            "storage": {"path": str(storage)},
            "fit": {"enabled": False},
        },
    }


class CpuSampler:
    """The machine's busy CPU time, sampled from /proc/stat every ``every`` s (Linux; empty elsewhere)."""

    def __init__(self, every: float = 0.2):
        self.every, self.samples = every, []  # (wall time, busy CPU-seconds since boot)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def busy_seconds() -> float | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = self.busy_seconds()
            if busy is None:
                return
            self.samples.append((time.time(), busy))
            self._stop.wait(self.every)

    def __enter__(self):
        busy = self.busy_seconds()
        if busy is not None:
            self.samples.append((time.time(), busy))
            self._stop.wait(self.every)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> float | None:
        """Busy CPU-seconds between two wall times, interpolated between samples (the whole
        machine's: run it on an otherwise idle one)."""
        if len(self.samples) < 2 or not self.samples[0][0] <= t0 < t1 <= self.samples[-1][0]:
            return None
        return self._at(t1) - self._at(t0)

    def _at(self, t: float) -> float:
        for (ta, ba), (tb, bb) in zip(self.samples, self.samples[1:]):
            if ta <= t <= tb:
                return ba + (bb - ba) * (t - ta) / max(tb - ta, 1e-9)
        raise ValueError(t)


def run_vlmscale(spec_path: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec_path), "--plain"], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode != 0:
        raise SystemExit(f"vlmscale run failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0, r.stdout


def cell_configs(spec_path: Path, exp_dir: Path) -> dict[str, dict]:
    from orchestrator.plan.cells import tower_dir
    from orchestrator.spec import expand, load
    from orchestrator.store.layout import ExperimentDir

    exp = load(spec_path)
    return {c.key: c.config.to_dict() for c in expand(exp, tower_dir(exp, ExperimentDir.at(str(exp_dir))))}


def train_one(config: dict) -> float:
    from workloads.config import CellConfig
    from workloads.train import train_local

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        train_local(CellConfig.from_dict(config), d)
    return time.perf_counter() - t0


CHILD = ("import json, sys, tempfile; sys.path.insert(0, {root!r});"
         "from workloads.config import CellConfig; from workloads.train import train_local;"
         "d = tempfile.mkdtemp(); train_local(CellConfig.from_dict(json.loads(sys.stdin.read())), d)")


def process_per_cell(configs: list[dict], slots: int) -> float:
    def one(config: dict) -> None:
        subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT))], input=json.dumps(config), text=True,
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(one, configs))
    return time.perf_counter() - t0


def breakdown(exp_dir: Path, wall: float, started: float) -> dict[str, float]:
    """Where (a)'s time went, from the ledger: when the first cell finished and what came after the last."""
    finished = {p.stem: json.loads(p.read_text())["finished_at"] for p in (exp_dir / "results").glob("*.json")}
    first = min(finished, key=finished.get)
    return {"first_cell": first, "first_cell_finished_s": finished[first] - started,
            "after_last_cell_s": started + wall - max(finished.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=4, help="cells = 3 x seeds")
    ap.add_argument("--slots", type=int, default=2, help="cells at a time in (c); vlmscale derives its own")
    ap.add_argument("--json", help="write every number here")
    a = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' weight-loading bars, once per cell of (b)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        spec_path = root / "overhead.yaml"
        spec_path.write_text(yaml.safe_dump(spec(root / "runs", a.steps, a.seeds)))
        with CpuSampler() as cpu:
            started = time.time()
            wall_a, out = run_vlmscale(spec_path)
        exp_dir = root / "runs" / "overhead"
        parts = breakdown(exp_dir, wall_a, started)
        configs = cell_configs(spec_path, exp_dir)  # the same cells, on the tower (a) pretrained
        per_cell = {key: train_one(c) for key, c in configs.items()}
        # the start: until the first cell began training (its finish less its compute alone)
        start_s = parts["first_cell_finished_s"] - per_cell[parts["first_cell"]]
        start_cpu = cpu.between(started, started + start_s)
        parts.update({"start_s": start_s, "start_cpu_s": start_cpu})
        wall_b = sum(per_cell.values())
        wall_c = process_per_cell(list(configs.values()), a.slots)
    ideal = wall_b / a.slots
    result = {"cells": len(configs), "steps": a.steps, "slots": a.slots, "cpus": os.cpu_count(),
              "vlmscale_run_s": wall_a, "plain_loop_s": wall_b, "process_per_cell_s": wall_c, "ideal_s": ideal,
              "per_cell_compute_s": per_cell, **parts}
    print(f"{len(configs)} cells x {a.steps} steps on {os.cpu_count()} CPUs; ideal = plain loop / {a.slots} slots "
          f"= {ideal:.1f} s")
    print(f"{'way':<34}{'wall':>9}{'x ideal':>10}")
    for name, wall in (("(a) vlmscale run", wall_a), ("(b) plain loop, one process", wall_b),
                       (f"(c) one process per cell, {a.slots} at once", wall_c)):
        print(f"{name:<34}{wall:>8.1f}s{wall / ideal:>9.2f}x")
    alone = per_cell[parts["first_cell"]]
    print(f"(a) first cell finished at {parts['first_cell_finished_s']:.1f} s ({alone:.1f} s of it the cell's own "
          f"compute, alone); after the last cell finished: {parts['after_last_cell_s']:.1f} s")
    if start_cpu is not None:
        cores = os.cpu_count() or 1
        print(f"(a) its start: {start_s:.1f} s with {start_cpu:.1f} CPU-seconds spent ({start_cpu / start_s / cores:.0%} "
              f"of {cores} cores busy); no overlap brings it below {start_cpu / cores:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

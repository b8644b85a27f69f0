"""A study in rounds, end to end on real local Ray: the grid, a fit, the proposed cells as round
2, a refit — and a driver killed during round 2 that resumes round 2 without repeating round 1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.support.runs import ROOT, _env, _vlmscale, no_ray_left  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path) -> Path:
    doc = {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "rounds"},
        "spec": {
            "grid": {"llms": ["tiny-xs", "tiny-s"], "visual_tokens": [1, 4, 16], "compressors": ["avgpool"]},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 20}},
            "data": {"eval_size": 64, "train_size": 2000},
            "training": {"steps": 60, "batch_size": 16, "checkpoint_every": 20, "log_every": 10},
            "storage": {"path": str(tmp_path / "runs")},
            "fit": {"bootstrap": 50, "propose": 4, "candidates": {"llms": ["tiny-xs", "tiny-s", "tiny-m"]}},
            "rounds": {"count": 2, "cells_per_round": 2},
        },
    }
    path = tmp_path / "rounds.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_two_rounds_train_the_proposed_cells_and_a_killed_round_resumes(tmp_path, no_ray_left):
    spec = _spec(tmp_path)
    exp_dir = tmp_path / "runs" / "rounds"
    state = exp_dir / "rounds.json"
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    round2: list[str] = []
    while time.time() < deadline:  # kill once round 2 is proposed and one of its cells trains
        if state.is_file():
            from orchestrator.spec import cell_key

            points = json.loads(state.read_text())["rounds"]
            if len(points) >= 2 and points[1]["cells"]:
                round2 = [cell_key(p["llm"], p["visual_tokens"], p["compressor"], p["task"], p["seed"])
                          for p in points[1]["cells"]]
                if any((exp_dir / "progress" / f"{k}.jsonl").is_file() for k in round2):
                    break
        assert driver.poll() is None, "the run ended before round 2 could be interrupted"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    results = exp_dir / "results"
    round1 = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in results.glob("*.json") if p.stem not in round2}
    assert len(round1) == 6 and len(round2) == 2
    proposed = json.loads(state.read_text())["rounds"][1]["cells"]
    time.sleep(2)

    r = _vlmscale("resume", "rounds", "--storage", str(tmp_path / "runs"), "--plain")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "round 1: 6 cells, 6 already finished, 0 to run" in r.stdout

    # round 1 was not trained again; round 2 ran exactly the proposed cells, proposed once
    after = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in results.glob("*.json")}
    assert {k: v for k, v in after.items() if k in round1} == round1
    assert sorted(after) == sorted(list(round1) + [f"{k}.json" for k in round2])
    log = json.loads(state.read_text())["rounds"]
    assert len(log) == 2 and log[1]["cells"] == proposed
    first, second = log[0]["fit"], log[1]["fit"]
    assert first["cells"] == 6 and second["cells"] == 8
    # each round's frontier interval is recorded for the report; it is not asserted to shrink: the
    # picks minimise the *expected* variance, and real cells may show the law was surer than it
    # should have been (60-step cells, 50 replicates)
    assert first["frontier_ci_width"] > 0 and second["frontier_ci_width"] > 0
    # round 2's cells were forecast before they trained, and round 2's fit checked the forecasts
    assert all({"value", "low", "high", "level"} <= set(p["forecast"]) for p in proposed)
    assert all(p["forecast"]["low"] < p["forecast"]["value"] < p["forecast"]["high"] for p in proposed)
    check = second["forecast_check"]
    assert "forecast_check" not in first and check["round"] == 2 and check["cells"] == 2
    assert 0 <= check["inside"] <= 2 and check["median_rel_error"] >= 0 and check["level"] == 0.9
    said = (f"round 2's 2 cells: median forecast error {100 * check['median_rel_error']:.1f} %, "
            f"{check['inside']} of 2 inside their 90 % interval")
    assert said in r.stdout
    status = _vlmscale("status", "rounds", "--storage", str(tmp_path / "runs"))
    assert said in status.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rounds").experiment_id], max_results=1000)
    parents, cells, fits = ([r for r in runs if r.data.tags.get("vlmscale.role") == role]
                            for role in ("parent", "cell", "fit"))
    assert len(parents) == 1 and len(cells) == 8 and len({c.data.tags["vlmscale.cell"] for c in cells}) == 8
    assert sorted(c.data.tags["vlmscale.round"] for c in cells) == ["1"] * 6 + ["2"] * 2
    assert sorted(f.data.tags["vlmscale.round"] for f in fits) == ["1", "2"]
    assert all(c.info.status == "FINISHED" for c in cells)

    assert "Rounds" in (exp_dir / "fit" / "index.html").read_text()
    assert "median forecast error" in (exp_dir / "fit" / "index.html").read_text()
    (fit1,) = [f for f in fits if f.data.tags["vlmscale.round"] == "1"]
    (fit2,) = [f for f in fits if f.data.tags["vlmscale.round"] == "2"]
    with tempfile.TemporaryDirectory() as d:  # round 1's fit run keeps the forecasts it made
        logged = json.loads(Path(client.download_artifacts(fit1.info.run_id, "forecasts.json", d)).read_text())
    assert logged == {"round": 2, "cells": proposed}
    assert fit2.data.metrics["forecast_cells"] == 2 and fit2.data.metrics["forecast_inside"] == check["inside"]

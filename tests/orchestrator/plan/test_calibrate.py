"""Learning-rate calibration on real local Ray: Optuna TPE proposes, ASHA stops, the best eval
loss wins — inside the range, deterministic for a seed, never repeated on resume."""

from __future__ import annotations

import json

import pytest
import yaml

from orchestrator.plan.calibration import chosen_lrs, read_calibration
from orchestrator.run.calibration_search import calibrate
from orchestrator.spec import parse
from orchestrator.store.layout import ExperimentDir
from tests.support.runs import ROOT, no_ray_left  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def _exp(tmp_path, name):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["storage"]["path"] = str(tmp_path / "runs")
    doc["spec"]["vision"]["pretrain"] = None
    doc["spec"]["grid"].update(llms=["tiny-xs", "tiny-s"], visual_tokens=[1, 4])
    doc["spec"]["data"]["eval_size"] = 64
    doc["spec"]["training"]["lr"] = {"low": 1e-3, "high": 3e-2, "trials": 4, "steps": 24, "seed": 3}
    doc["spec"]["training"]["log_every"] = 4
    exp = parse(doc)
    return exp, ExperimentDir.of(exp.spec.storage.path, name)


def test_calibration_is_in_range_deterministic_and_not_repeated(tmp_path, no_ray_left):
    import ray

    from orchestrator.run.cluster import WORKER_ENV

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": WORKER_ENV})
    try:
        first, first_dir = _exp(tmp_path, "first")
        lrs = calibrate(first, first_dir, ["tiny-xs", "tiny-s"], echo=lambda *_: None)
        assert set(lrs) == {"tiny-xs", "tiny-s"} and all(1e-3 <= lr <= 3e-2 for lr in lrs.values())
        state = read_calibration(first_dir)
        for entry in state["sizes"].values():
            assert len(entry["trials"]) == 4 and any(t["completed"] for t in entry["trials"])
            assert entry["lr"] == min((t for t in entry["trials"] if t["completed"]),
                                      key=lambda t: t["eval_loss"])["lr"]

        # the same seed in another experiment: the same trials and choices
        second, second_dir = _exp(tmp_path, "second")
        assert calibrate(second, second_dir, ["tiny-xs", "tiny-s"], echo=lambda *_: None) == lrs
        assert [t["lr"] for t in read_calibration(second_dir)["sizes"]["tiny-s"]["trials"]] == \
               [t["lr"] for t in state["sizes"]["tiny-s"]["trials"]]

        # a resumed experiment reuses its calibration: nothing runs, nothing changes
        before = (first_dir.root / "calibration.json").read_text()
        said = []
        assert calibrate(first, first_dir, ["tiny-xs", "tiny-s"], echo=said.append) == lrs
        assert said == [] and (first_dir.root / "calibration.json").read_text() == before
        assert chosen_lrs(first_dir) == lrs

        # the grid's cells train at their size's calibrated LR, unscaled
        from orchestrator.spec import expand

        cells = expand(first, None, lrs)
        assert {c.llm: c.config.train.lr for c in cells} == lrs
        assert all(c.config.train.lr_reference_width is None for c in cells)
        assert json.loads((first_dir.root / "calibration.json").read_text())["sizes"]["tiny-xs"]["settings"]
    finally:
        ray.shutdown()


def test_a_run_calibrates_each_size_once_and_trains_its_cells_at_that_rate(tmp_path, no_ray_left):
    """`vlmscale run` with a calibration block: one search per size before the grid, the cells at
    the chosen rates, MLflow runs per size and trial; a rerun reuses the calibration."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from tests.support.runs import _env

    exp, exp_dir = _exp(tmp_path, "calibrated")
    doc = exp.model_dump(mode="json", exclude_defaults=False)
    doc["spec"]["training"].update(steps=40, checkpoint_every=20, log_every=10)
    doc["spec"]["training"]["lr"].update(trials=2, steps=20)
    doc["spec"]["fit"]["enabled"] = False
    spec = tmp_path / "calibrated.yaml"
    spec.write_text(yaml.safe_dump(doc))

    def run():
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    first = run()
    assert first.count("calibrated tiny-") == 2
    lrs = chosen_lrs(exp_dir)
    client = MlflowClient(f"sqlite:///{exp_dir.root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("calibrated").experiment_id], max_results=1000)
    cells = [r for r in runs if r.data.tags.get("vlmscale.role") == "cell"]
    assert len(cells) == 4 and all(float(c.data.params["train.lr"]) == lrs[c.data.params["llm"]] for c in cells)
    sizes = [r for r in runs if r.data.tags.get("vlmscale.role") == "calibration"]
    trials = [r for r in runs if r.data.tags.get("vlmscale.role") == "calibration-trial"]
    assert sorted(r.data.tags["vlmscale.llm"] for r in sizes) == ["tiny-s", "tiny-xs"] and len(trials) == 4
    assert all(client.list_artifacts(r.info.run_id) for r in sizes)  # the LR-vs-loss plot

    again = run()
    assert "calibrated tiny-" not in again and "4 already finished" in again
    status = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "calibrated", "--storage",
                             str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "calibrated learning rates: " in status.stdout

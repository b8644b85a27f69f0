"""The fault suite: what happens to an experiment when the world misbehaves — MLflow goes away,
a checkpoint is cut short, the storage refuses writes, the driver dies at the worst moment. Each
asserts nothing lost and nothing duplicated. The end-to-end ones are marked ``chaos`` (their own
CI step); the unit tests of the machinery run with the fast suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from .mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[1]


# -- the courier: MLflow calls off the driver's thread ---------------------------------------------

class _FlakyTracker:
    def __init__(self, failures: int, calls: list, gate: threading.Event | None = None):
        self.failures, self.calls, self.gate = failures, calls, gate

    def log_metrics(self, run_id, metrics, step):
        if self.gate is not None:
            self.gate.wait(10)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mlflow is down")
        self.calls.append(("log_metrics", run_id, step))

    def finish(self, run_id, status):
        self.calls.append(("finish", run_id, status))

    def set_tags(self, run_id, tags):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        raise MlflowException("bad tag", error_code=INVALID_PARAMETER_VALUE)


def test_the_courier_never_blocks_the_driver_and_delivers_in_order_after_an_outage():
    from orchestrator.track import Courier

    calls, said, gate = [], [], threading.Event()
    courier = Courier(lambda: _FlakyTracker(failures=3, calls=calls, gate=gate), echo=said.append)
    courier.BACKOFF_S = (0.01,)
    t0 = time.time()
    for step in (5, 10, 15):
        courier.submit("log_metrics", "r1", {"loss": 1.0}, step)
    courier.submit("set_tags", "r1", {"x": "y"})  # refused for good (4xx): dropped, not retried forever
    courier.submit("finish", "r1", "FINISHED")
    assert time.time() - t0 < 0.1 and courier.pending == 5  # the driver went on while MLflow hangs
    gate.set()
    assert courier.flush(10) == 0
    assert calls == [("log_metrics", "r1", 5), ("log_metrics", "r1", 10), ("log_metrics", "r1", 15),
                     ("finish", "r1", "FINISHED")]
    assert courier.dropped == 1 and courier.delivered == 4
    assert any("MLflow unreachable" in s for s in said) and any("MLflow is back" in s for s in said)
    assert any("refused set_tags" in s for s in said)


def test_an_mlflow_that_hangs_is_reported_while_its_client_retries():
    from orchestrator.track import Courier

    said, gate = [], threading.Event()
    courier = Courier(lambda: _FlakyTracker(failures=0, calls=[], gate=gate), echo=said.append)
    courier.SLOW_S = 0.05
    courier.submit("log_metrics", "r1", {"loss": 1.0}, 5)
    time.sleep(0.2)
    courier.submit("log_metrics", "r1", {"loss": 1.0}, 10)  # the next report notices the hang
    assert any("MLflow unreachable (no answer for" in s for s in said), said
    gate.set()
    assert courier.flush(5) == 0 and any("MLflow is back" in s for s in said)


def test_flush_gives_up_after_its_deadline_and_says_what_is_left():
    from orchestrator.track import Courier

    courier = Courier(lambda: _FlakyTracker(failures=10**9, calls=[]), echo=lambda s: None)
    courier.BACKOFF_S = (0.01,)
    courier.submit("log_metrics", "r1", {"loss": 1.0}, 5)
    courier.submit("finish", "r1", "FINISHED")
    t0 = time.time()
    assert courier.flush(0.3) == 2 and time.time() - t0 < 2


def test_reports_a_dead_driver_never_delivered_are_backfilled_from_the_progress_file(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.layout import ExperimentDir
    from orchestrator.track import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "e")
    run_id = tracker.child_run(tracker.parent_run("e", "d", "spec"), "e", "cell-a", {})
    tracker.log_metrics(run_id, {"loss": 3.0, "step": 5}, 5)  # delivered before MLflow went away
    exp_dir = ExperimentDir(tmp_path / "e")
    exp_dir.progress.mkdir(parents=True)
    lines = [{"step": s, "loss": 3.0 - s / 10, "lr": 0.1} for s in (5, 10, 15, 10, 15, 20)]  # a resume replays 10, 15
    exp_dir.progress_path("cell-a").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 2')
    assert Tracker(uri, "e").log_history(run_id, exp_dir.progress_history("cell-a")) == 3
    history = MlflowClient(uri).get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == [5, 10, 15, 20]
    assert Tracker(uri, "e").log_history(run_id, exp_dir.progress_history("cell-a")) == 0  # idempotent


# -- end to end ---------------------------------------------------------------------------------------

def _spec(tmp_path: Path, name: str, uri: str | None = None, steps: int = 30, llms=("tiny-xs",), every=10,
          **spec) -> Path:
    doc = {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": name},
        "spec": {
            "grid": {"llms": list(llms), "visual_tokens": [1, 4], "compressors": ["avgpool"], "tasks": ["shapes"]},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 20}},
            "data": {"eval_size": 32, "train_size": 2000},
            "training": {"steps": steps, "batch_size": 16, "checkpoint_every": every, "log_every": every // 2},
            "storage": {"path": str(tmp_path / "runs")},
            "failure": {"retries_per_cell": 1},
            "fit": {"enabled": False},
            **spec,
        },
    }
    if uri:
        doc["spec"]["tracking"] = {"mlflow_uri": uri}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _env(**extra):
    return {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1", **extra}


def _start(spec: Path, log: Path, *args, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain", *args], cwd=ROOT,
                            env=_env(**env), stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for(predicate, driver: subprocess.Popen, timeout: float = 600, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert driver.poll() is None, f"the driver ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _runs(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=1000)
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("vlmscale.role"), []).append(r)
    return client, by_role


def _reference(exp_dir: Path, key: str, tmp_path: Path) -> dict:
    """The cell trained undisturbed, in-process."""
    from orchestrator.spec import expand, parse
    from workloads.train import train_local

    config = json.loads((exp_dir / "experiment.json").read_text())
    config["spec"]["spec"].pop("fault_injection", None)  # undisturbed
    cell = next(c for c in expand(parse(config["spec"]), str(exp_dir / "vision")) if c.key == key)
    metrics, _ = train_local(cell.config, tmp_path / f"reference-{key}")
    return metrics


@pytest.mark.chaos
def test_mlflow_down_for_30_s_mid_experiment_loses_nothing_and_blocks_nothing(tmp_path):
    steps = 4000
    server = MlflowServer(tmp_path / "mlflow").__enter__()
    try:
        spec = _spec(tmp_path, "outage", server.uri, steps=steps, every=500)
        log = tmp_path / "driver.log"
        driver = _start(spec, log)

        def step_seen(n):
            return any(f"step {s}/{steps} ·" in log.read_text() for s in range(n, steps, 25))

        _wait_for(lambda: step_seen(100), driver, what="training to report")
        server.__exit__()  # MLflow goes away
        down_at, lines_before = time.time(), len(log.read_text().splitlines())
        time.sleep(30)
        lines_during = len(log.read_text().splitlines()) - lines_before
        server = MlflowServer(tmp_path / "mlflow", port=server.port).__enter__()  # back, same store and port
        print(f"MLflow down {time.time() - down_at:.0f} s")
        assert driver.wait(600) == 0, log.read_text()[-3000:]
        out = log.read_text()
        # the driver never waited for MLflow: progress went on being printed during the outage
        assert lines_during >= 5, out[-3000:]
        assert "MLflow unreachable" in out and "MLflow is back" in out

        exp_dir = tmp_path / "runs" / "outage"
        ledger = sorted(p.stem for p in (exp_dir / "results").glob("*.json"))
        assert ledger == ["tiny-xs-v1-avgpool-shapes-s0", "tiny-xs-v4-avgpool-shapes-s0"]
        client, runs = _runs(server.uri, "outage")
        assert len(runs["parent"]) == 1 and len(runs["cell"]) == 2
        expected = list(range(250, steps + 1, 250))
        for run in runs["cell"]:
            assert run.info.status == "FINISHED"
            steps_logged = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
            assert steps_logged == expected, run.data.tags["vlmscale.cell"]  # every point, once
        key = "tiny-xs-v1-avgpool-shapes-s0"
        record = json.loads((exp_dir / "results" / f"{key}.json").read_text())
        reference = _reference(exp_dir, key, tmp_path)
        assert record["metrics"]["error"] == reference["error"]
        assert record["metrics"]["eval_loss"] == reference["eval_loss"]
    finally:
        server.__exit__()


@pytest.mark.chaos
def test_a_checkpoint_cut_short_under_ray_resumes_from_the_one_before(tmp_path):
    key = "tiny-xs-v4-avgpool-shapes-s0"
    spec = _spec(tmp_path, "cut", steps=30, every=10,
                 fault_injection={"cells": [key], "step": 20, "during": "checkpoint"})
    log = tmp_path / "driver.log"
    driver = _start(spec, log)
    assert driver.wait(600) == 0, log.read_text()[-3000:]
    exp_dir = tmp_path / "runs" / "cut"
    record = json.loads((exp_dir / "results" / f"{key}.json").read_text())
    assert record["metrics"]["resumed_from_step"] == 10  # not the cut step-20 checkpoint
    reference = _reference(exp_dir, key, tmp_path)
    assert record["metrics"]["error"] == reference["error"]
    assert record["metrics"]["eval_loss"] == reference["eval_loss"]
    client, runs = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "cut")
    assert len(runs["cell"]) == 2 and all(r.info.status == "FINISHED" for r in runs["cell"])
    cell = next(r for r in runs["cell"] if r.data.tags["vlmscale.cell"] == key)
    steps = [m.step for m in client.get_metric_history(cell.info.run_id, "loss")]
    assert sorted(steps) == [5, 10, 15, 20, 25, 30]  # replayed steps logged once

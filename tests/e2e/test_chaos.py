"""The fault suite: what happens to an experiment when the world misbehaves — MLflow goes away,
a checkpoint is cut short, the storage refuses writes, the driver dies at the worst moment. Each
asserts nothing lost and nothing duplicated. The end-to-end ones are marked ``chaos`` (their own
CI step); the unit tests of the machinery run with the fast suite."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.support.mlflow_server import MlflowServer
from tests.support.runs import _env, _spec
from tests.support.stored import stored_tower

ROOT = Path(__file__).resolve().parents[2]


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
    from orchestrator.tracking.courier import Courier

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
    from orchestrator.tracking.courier import Courier

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
    from orchestrator.tracking.courier import Courier

    courier = Courier(lambda: _FlakyTracker(failures=10**9, calls=[]), echo=lambda s: None)
    courier.BACKOFF_S = (0.01,)
    courier.submit("log_metrics", "r1", {"loss": 1.0}, 5)
    courier.submit("finish", "r1", "FINISHED")
    t0 = time.time()
    assert courier.flush(0.3) == 2 and time.time() - t0 < 2


def test_reports_a_dead_driver_never_delivered_are_backfilled_from_the_progress_file(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.store.layout import ExperimentDir
    from orchestrator.tracking.tracker import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "e")
    run_id = tracker.child_run(tracker.parent_run("e", "d", "spec"), "e", "cell-a", {})
    tracker.log_metrics(run_id, {"loss": 3.0, "step": 5}, 5)  # delivered before MLflow went away
    exp_dir = ExperimentDir(tmp_path / "e")
    exp_dir.progress.mkdir(parents=True)
    lines = [{"step": s, "loss": 3.0 - s / 10, "lr": 0.1} for s in (5, 10, 15, 10, 15, 20)]  # a resume replays 10, 15
    exp_dir.progress_path("cell-a").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 2')
    assert Tracker(uri, "e").log_history(run_id, exp_dir.progress_history("cell-a")) == 3
    history = MlflowClient(uri).get_metric_history(run_id, "curves/loss")
    assert sorted(m.step for m in history) == [5, 10, 15, 20]
    assert Tracker(uri, "e").log_history(run_id, exp_dir.progress_history("cell-a")) == 0  # idempotent


# -- storage that refuses writes ---------------------------------------------------------------------

def _tmpfs(path: Path, *options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    sized = options if any(o.startswith("size=") for o in options) else ("size=512k", *options)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(sized), "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs CAP_SYS_ADMIN here: {r.stderr.strip()}")


@pytest.mark.parametrize("fault", ["not-a-directory", "full", "read-only"])
def test_storage_that_refuses_writes_is_one_clear_error_and_nothing_written(tmp_path, fault):
    root = tmp_path / "store"
    if fault == "not-a-directory":
        root.write_text("a file where the storage should be")
        storage, expect = root / "runs", "Not a directory"
    else:
        _tmpfs(root, "ro" if fault == "read-only" else "rw")
        if fault == "full":
            with open(root / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass
        storage, expect = root / "runs", ("Read-only file system" if fault == "read-only"
                                          else "No space left on device")
    try:
        before = sorted(p.name for p in root.iterdir()) if root.is_dir() else None
        spec = _spec(tmp_path, "refused", llms=("tiny-xs",))
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--storage", str(storage),
                            "--plain"], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot be written" in lines[0] and expect in lines[0], r.stderr
        assert "Traceback" not in r.stderr
        if before is not None:  # nothing half-written: no experiment directory, no probe left behind
            leftover = sorted(p.name for p in root.iterdir())
            assert leftover in (before, sorted(before + ["runs"])), leftover
            if (root / "runs").exists():
                assert not any((root / "runs").rglob("*.*")), list((root / "runs").rglob("*"))
    finally:
        if fault != "not-a-directory":
            subprocess.run(["umount", str(root)], capture_output=True)


# -- end to end ---------------------------------------------------------------------------------------

def _start(spec: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                            env=_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)


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
    cell = next(c for c in expand(parse(config["spec"]), stored_tower(config["spec"], exp_dir)) if c.key == key)
    metrics, _ = train_local(cell.config, tmp_path / f"reference-{key}")
    return metrics


@pytest.mark.chaos
def test_mlflow_down_for_30_s_mid_experiment_loses_nothing_and_blocks_nothing(tmp_path):
    steps = 4000
    server = MlflowServer(tmp_path / "mlflow").__enter__()
    try:
        spec = _spec(tmp_path, "outage", server.uri, steps=steps, llms=("tiny-xs",), checkpoint_every=500,
                     log_every=250)
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
            steps_logged = sorted(m.step for m in client.get_metric_history(run.info.run_id, "curves/loss"))
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
    spec = _spec(tmp_path, "cut", steps=30, llms=("tiny-xs",),
                 fault={"cells": [key], "step": 20, "during": "checkpoint"})
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
    steps = [m.step for m in client.get_metric_history(cell.info.run_id, "curves/loss")]
    assert sorted(steps) == [5, 10, 15, 20, 25, 30]  # replayed steps logged once


@pytest.mark.chaos
def test_driver_killed_during_the_final_fit_finishes_it_on_rerun_without_duplicates(tmp_path):
    spec = _spec(tmp_path, "fitkill", steps=20, fit={"enabled": True, "bootstrap": 3000, "text_tokens": 50})
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["grid"]["visual_tokens"] = [1, 4, 16]
    spec.write_text(yaml.safe_dump(doc))
    exp_dir = tmp_path / "runs" / "fitkill"
    log = tmp_path / "driver.log"
    driver = _start(spec, log)
    _wait_for(lambda: (exp_dir / "fit").is_dir(), driver, what="the fit to write its report")
    driver.send_signal(signal.SIGKILL)  # mid-report: the fit run exists, some files are written
    driver.wait()
    results = {p.name: p.read_text() for p in (exp_dir / "results").glob("*.json")}
    assert len(results) == 6
    _, killed = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "fitkill")
    assert [r.info.status for r in killed["fit"]] == ["RUNNING"]  # the kill did land inside the fit

    again = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "6 already finished, 0 to run" in again.stdout
    assert {p.name: p.read_text() for p in (exp_dir / "results").glob("*.json")} == results  # nothing retrained
    client, runs = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "fitkill")
    assert len(runs["parent"]) == 1 and len(runs["cell"]) == 6 and len(runs["fit"]) == 1
    fit = runs["fit"][0]
    assert fit.info.status == "FINISHED" and fit.data.params["bootstrap"] == "3000"
    assert [m.step for m in client.get_metric_history(fit.info.run_id, "alpha")] == [6]  # one point, not two
    assert "<img" in (exp_dir / "fit" / "index.html").read_text()
    for png in (exp_dir / "fit").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert yaml.safe_load((exp_dir / "fit" / "next.yaml").read_text())["kind"] == "ScalingExperiment"
    json.loads((exp_dir / "fit" / "fit.json").read_text())


@pytest.mark.chaos
def test_storage_filling_up_mid_run_ends_with_one_clear_line_and_an_intact_ledger(tmp_path):
    """6 MB of storage: the first cells finish, then checkpoints and MLflow's sqlite hit the wall.
    The run must end (not hang on retries), say why in its last line, and keep what finished."""
    store = tmp_path / "small"
    _tmpfs(store, "size=6m")
    try:
        spec = _spec(tmp_path, "full", steps=60, checkpoint_every=5, log_every=2)
        doc = yaml.safe_load(spec.read_text())
        doc["spec"]["storage"]["path"] = str(store / "runs")
        spec.write_text(yaml.safe_dump(doc))
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and time.time() - t0 < 240, (r.returncode, r.stderr[-2000:])
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and ("full" in last or "No space left" in last), last
        results = store / "runs" / "full" / "results"
        for p in results.iterdir():  # every ledger record whole, no temp file left
            assert p.suffix == ".json" and not p.name.startswith("."), p.name
            json.loads(p.read_text())
    finally:
        subprocess.run(["umount", str(store)], capture_output=True)


"""`vlmscale run` end to end: real local Ray, a real MLflow server, crash recovery, driver SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.mlflow_server import MlflowServer
from tests.support.stored import stored_tower

pytestmark = pytest.mark.slow
from tests.support.runs import ROOT, _env, _runs, _spec, _vlmscale, kill_midway, no_ray_left  # noqa: F401 (a fixture)


def test_grid_completes_with_one_parent_and_one_child_run_per_cell(tmp_path, no_ray_left):
    with MlflowServer(tmp_path / "mlflow") as server:
        spec = _spec(tmp_path, "grid", server.uri)
        r = _vlmscale("run", str(spec), "--plain")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        # --plain (the RayJob's mode) shows training as it goes: a line per cell at every report
        assert "[vlmscale] tiny-xs-v1-avgpool-shapes-s0: running step 10/30 · loss " in r.stdout
        assert "samples/s · ETA " in r.stdout and "cells done" in r.stdout
        # quiet by default: none of the libraries' chatter (-v keeps it), no colour codes in logs
        for noise in ("\x1b[", "TensorBoard", "INFO mlflow", "alembic", "Trial status", "╭", "it/s]",
                      "tensorboardx", "Tune config"):
            assert noise not in r.stdout + r.stderr, noise
        parents, children = _runs(server.uri, "grid")
        assert len(parents) == 1 and len(children) == 4
        assert parents[0].info.status == "FINISHED"
        assert {c.data.tags["vlmscale.cell"] for c in children} == {
            "tiny-xs-v1-avgpool-shapes-s0", "tiny-xs-v4-avgpool-shapes-s0",
            "tiny-s-v1-avgpool-shapes-s0", "tiny-s-v4-avgpool-shapes-s0"}
        for c in children:
            assert c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            assert c.info.status == "FINISHED"
            for key in ("error", "eval_loss", "curves/loss", "curves/lr"):
                assert key in c.data.metrics, key
            # constants are params (not one-point charts); the costs at the experiment's Q
            for key in ("llm_params", "llm_params_total", "inference_flops_llm", "inference_flops_vlm", "text_tokens"):
                assert key in c.data.params and key not in c.data.metrics, key
            assert c.data.params["visual_tokens"] in ("1", "4") and c.data.params["train.steps"] == "30"
            assert "vlmscale.checkpoint" in c.data.tags
        assert "pkg.torch" in parents[0].data.params and "git_sha" in parents[0].data.params

        results = json.loads(_vlmscale("results", str(spec), "--format", "json").stdout)
        assert len(results) == 4 and all(row["status"] == "finished" for row in results)
        for row in results:
            child = next(c for c in children if c.data.tags["vlmscale.cell"] == row["cell"])
            assert row["error"] == pytest.approx(child.data.metrics["error"])
            assert row["inference_flops_llm"] == pytest.approx(float(child.data.params["inference_flops_llm"]), rel=1e-5)
            assert row["inference_flops_llm"] == 2 * row["llm_params"] * (50 + row["visual_tokens"])
        csv = _vlmscale("results", str(spec), "--format", "csv").stdout.splitlines()
        assert csv[0].startswith("cell,llm,llm_params,visual_tokens,compressor,task,seed,error")

        # running it again trains nothing and creates no run
        again = _vlmscale("run", str(spec), "--plain")
        assert again.returncode == 0 and "4 already finished, 0 to run" in again.stdout
        parents2, children2 = _runs(server.uri, "grid")
        assert len(parents2) == 1 and len(children2) == 4


def test_a_cell_that_crashes_once_resumes_to_the_uninterrupted_result(tmp_path, no_ray_left):
    from workloads.train import train_local

    crashing = "tiny-s-v4-avgpool-shapes-s0"
    spec = _spec(tmp_path, "crash", None, fault={"cells": [crashing], "step": 15}, llms=("tiny-s",))
    r = _vlmscale("run", str(spec), "--plain")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp_dir = tmp_path / "runs" / "crash"
    record = json.loads((exp_dir / "results" / f"{crashing}.json").read_text())
    assert record["metrics"]["resumed_from_step"] == 10  # crashed at 15, resumed from the step-10 checkpoint
    progress = [json.loads(line) for line in (exp_dir / "progress" / f"{crashing}.jsonl").read_text().splitlines()]
    # reported 5, 10, 15, crashed starting step 16, resumed from 10 and reported 15 again
    assert [p["step"] for p in progress] == [5, 10, 15, 15, 20, 25, 30]

    # the same cell, uninterrupted, in-process
    config = json.loads((exp_dir / "experiment.json").read_text())
    from orchestrator.spec import expand, parse

    cell = next(c for c in expand(parse(config["spec"]), stored_tower(config["spec"], exp_dir)) if c.key == crashing)
    clean = dataclasses.replace(cell.config, fault=None)
    reference, _ = train_local(clean, tmp_path / "reference")
    assert record["metrics"]["error"] == reference["error"]
    assert record["metrics"]["eval_loss"] == reference["eval_loss"]

    parents, children = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "crash")
    assert len(parents) == 1 and sorted(c.data.tags["vlmscale.cell"] for c in children) == [
        "tiny-s-v1-avgpool-shapes-s0", crashing]


def test_driver_killed_with_sigkill_resumes_without_retraining_or_duplicates(tmp_path, no_ray_left):
    """SIGKILL while cells train and checkpoint every 2 steps (so the kill lands around checkpoint
    writes): the rerun retrains nothing finished and the resumed cells end bit-identical."""
    spec = _spec(tmp_path, "killed", None, steps=60, checkpoint_every=2)
    exp_dir = tmp_path / "runs" / "killed"
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = exp_dir / "results"
    kill_midway(driver, lambda: len(list(results.glob("*.json"))) if results.is_dir() else 0, cells=4)
    # the killed driver's lock is left behind; the next driver on this host sees its process gone
    assert json.loads((exp_dir / "driver.lock").read_text())["pid"] == driver.pid
    before = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in results.glob("*.json")}
    assert 1 <= len(before) < 4
    time.sleep(2)

    # restart by name, from the experiment's own stored spec (what a restarted driver pod does)
    r = _vlmscale("resume", "killed", "--storage", str(tmp_path / "runs"), "--plain")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    after = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in results.glob("*.json")}
    assert len(after) == 4
    for name, state in before.items():
        assert after[name] == state, f"{name} was trained again"
    assert f"{len(before)} already finished" in r.stdout
    # a cell interrupted by the kill ends where it would have without it
    from orchestrator.spec import expand, parse
    from workloads.train import train_local

    resumed = sorted(set(after) - set(before))[0][:-len(".json")]
    cell = next(c for c in expand(parse(json.loads((exp_dir / "experiment.json").read_text())["spec"]),
                                  stored_tower(json.loads((exp_dir / "experiment.json").read_text())["spec"], exp_dir)) if c.key == resumed)
    reference, _ = train_local(cell.config, tmp_path / "reference")
    assert json.loads(after[f"{resumed}.json"][1])["metrics"]["error"] == reference["error"]

    parents, children = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "killed")
    assert len(parents) == 1 and len(children) == 4
    assert len({c.data.tags["vlmscale.cell"] for c in children}) == 4
    assert all(c.info.status == "FINISHED" for c in children)
    # every finished cell logged each step once: resuming after the kill replays no metric step
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp_dir / 'mlflow.db'}")
    for c in children:
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "curves/loss")]
        assert len(steps) == len(set(steps)), (c.data.tags["vlmscale.cell"], steps)


def test_two_drivers_started_at_once_one_runs_the_other_refuses(tmp_path, no_ray_left):
    spec = _spec(tmp_path, "twice", None, llms=("tiny-xs",))
    drivers = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outs = [d.communicate(timeout=600) for d in drivers]
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 2], [(d.returncode, err[-2000:]) for d, (_, err) in zip(drivers, outs)]
    winner, loser = (0, 1) if drivers[0].returncode == 0 else (1, 0)
    err = outs[loser][1]
    assert f"experiment twice is being run by another driver: host {os.uname().nodename}, pid {drivers[winner].pid}" \
        in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    exp_dir = tmp_path / "runs" / "twice"
    assert len(list((exp_dir / "results").glob("*.json"))) == 2 and not (exp_dir / "driver.lock").exists()
    parents, children = _runs(f"sqlite:///{exp_dir / 'mlflow.db'}", "twice")
    assert len(parents) == 1 and len(children) == 2
    for c in children:  # trained once: one value per logged step
        from mlflow.tracking import MlflowClient

        steps = [m.step for m in MlflowClient(f"sqlite:///{exp_dir / 'mlflow.db'}").get_metric_history(
            c.info.run_id, "curves/loss")]
        assert len(steps) == len(set(steps))


def test_ui_serves_the_experiments_store_on_loopback(tmp_path):
    import urllib.request

    from orchestrator.run.driver import prepare
    from orchestrator.spec import parse
    from orchestrator.store.layout import ExperimentDir
    from orchestrator.tracking.tracker import Tracker, tracking_target
    from tests.support.mlflow_server import free_port

    spec = _spec(tmp_path, "watched", None)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["vision"]["pretrain"] = None
    spec.write_text(yaml.safe_dump(doc))
    exp = parse(doc)
    exp_dir = ExperimentDir.of(str(tmp_path / "runs"), "watched")
    prepare(exp, exp_dir, spec.read_text())
    tracker = Tracker(*tracking_target(exp, exp_dir))
    tracker.parent_run(exp.name, exp.digest(), spec.read_text())

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", "watched", "--storage", str(tmp_path / "runs"),
                           "--port", str(port)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, body = time.time() + 90, None
        while time.time() < deadline and body is None:
            assert ui.poll() is None, ui.stdout.read().decode()[-2000:]
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=watched")
                body = json.loads(urllib.request.urlopen(req, timeout=2).read())
            except OSError:
                time.sleep(0.5)
        assert body is not None and body["experiment"]["name"] == "watched"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_an_mlflow_server_with_basic_auth(tmp_path, no_ray_left):
    """The chart's mlflow.auth: with the Secret's credentials in the environment the run logs as
    usual; without them it stops at once with one line saying what to set (exit 2)."""
    with MlflowServer(tmp_path / "mlflow", auth=("admin", "vlmscale-Test-pw1")) as server:
        spec = _spec(tmp_path, "authed", server.uri, steps=10, llms=("tiny-xs",))
        bare = {k: v for k, v in _env().items() if not k.startswith("MLFLOW_TRACKING_")}
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                           env=bare, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.strip().splitlines()[-1].startswith("error: the MLflow server refused vlmscale (401 "
                                                            "unauthenticated): set MLFLOW_TRACKING_USERNAME")
        assert "Traceback" not in r.stderr
        creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "vlmscale-Test-pw1"}
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                           env={**bare, **creds}, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        os.environ.update(creds)
        try:
            parents, children = _runs(server.uri, "authed")
        finally:
            for k in creds:
                os.environ.pop(k)
        assert len(parents) == 1 and len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


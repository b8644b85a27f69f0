"""`vlmscale run` with storage.path: s3://… — real local Ray, real S3-compatible server (moto): the
ledger, checkpoints, Tune state and the lock in the bucket; a SIGKILLed driver resumes without
retraining; two drivers at once, one refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.runs import ROOT, _runs, _spec, kill_midway, no_ray_left  # noqa: F401 (fixture)
from tests.support.s3_server import S3Server
from tests.support.stored import stored_tower
from workloads import storage

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(tmp_path, monkeypatch):
    with S3Server(tmp_path / "moto") as s:
        env = {**s.env, storage.CACHE_ENV: str(tmp_path / "cache")}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield s


def _driver(spec, **kw):
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], cwd=ROOT,
                            env=env, **kw)


def _ledger(url: str) -> dict[str, str]:
    p = storage.path_of(f"{url}/results")
    return {f.name: f.read_text() for f in p.glob("*.json")} if p.exists() else {}


def test_driver_killed_on_object_storage_resumes_without_retraining(s3, tmp_path, no_ray_left):
    spec = _spec(tmp_path, "ons3", None, steps=60, checkpoint_every=2, storage={"path": s3.url("runs")})
    url = s3.url("runs/ons3")
    driver = _driver(spec, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_midway(driver, lambda: len(_ledger(url)), cells=4)
    before = _ledger(url)
    assert 1 <= len(before) < 4
    assert json.loads(storage.path_of(f"{url}/driver.lock").read_text())["pid"] == driver.pid

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "resume", "ons3", "--storage", s3.url("runs"),
                        "--plain"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{len(before)} already finished" in r.stdout
    after = _ledger(url)
    assert len(after) == 4 and all(after[k] == v for k, v in before.items())  # nothing finished was retrained
    assert not storage.path_of(f"{url}/driver.lock").exists()
    assert storage.path_of(f"{url}/tune/attempt-2").exists()  # Tune's state went to the bucket too

    # a cell the kill interrupted ends where it would have without it (vision tower fetched from the bucket)
    from orchestrator.spec import expand, parse
    from workloads.train import train_local

    manifest = json.loads(storage.path_of(f"{url}/experiment.json").read_text())
    resumed = sorted(set(after) - set(before))[0][:-len(".json")]
    cell = next(c for c in expand(parse(manifest["spec"]), stored_tower(manifest["spec"], url)) if c.key == resumed)
    reference, _ = train_local(cell.config, tmp_path / "reference")
    assert json.loads(after[f"{resumed}.json"])["metrics"]["error"] == reference["error"]

    # MLflow's default store is a local file (sqlite), in the cache beside the bucket's mirror
    db = tmp_path / "cache" / "s3" / s3.bucket / "runs" / "ons3" / "mlflow.db"
    parents, children = _runs(f"sqlite:///{db}", "ons3")
    assert len(parents) == 1 and len(children) == 4 and all(c.info.status == "FINISHED" for c in children)

    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "results", "ons3", "--storage", s3.url("runs"),
                        "--format", "json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 4, r.stderr[-2000:]


def test_two_drivers_on_one_bucket_one_runs_the_other_refuses(s3, tmp_path, no_ray_left):
    spec = _spec(tmp_path, "twice", None, llms=("tiny-xs",), storage={"path": s3.url("runs")})
    drivers = [_driver(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [d.communicate(timeout=600) for d in drivers]
    assert sorted(d.returncode for d in drivers) == [0, 2], [(d.returncode, e[-2000:]) for d, (_, e) in
                                                            zip(drivers, outs)]
    winner, loser = (0, 1) if drivers[0].returncode == 0 else (1, 0)
    err = outs[loser][1]
    assert f"experiment twice is being run by another driver: host {os.uname().nodename}, " \
           f"pid {drivers[winner].pid}" in err and "Traceback" not in err, err
    assert len(_ledger(s3.url("runs/twice"))) == 2

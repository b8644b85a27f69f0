"""What the end-to-end runs share: a spec of a small study (``_spec``), the environment and the
command line a driver runs with, an experiment's MLflow runs, killing a driver midway, and the
``no_ray_left`` fixture that asserts a test left no Ray process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.ray_utils import orphaned_agent, ray_processes

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, name: str, uri: str | None = None, steps=30, fault=None, llms=("tiny-xs", "tiny-s"),
          checkpoint_every=10, log_every=5, **spec) -> Path:
    """A small experiment under ``tmp_path``; ``spec`` adds or replaces sections of its spec."""
    doc = {
        "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": name},
        "spec": {
            "grid": {"llms": list(llms), "visual_tokens": [1, 4], "compressors": ["avgpool"], "tasks": ["shapes"]},
            "vision": {"model": "vit-micro", "pretrain": {"steps": 20}},
            "data": {"eval_size": 32, "train_size": 2000},
            "training": {"steps": steps, "batch_size": 16, "checkpoint_every": checkpoint_every,
                         "log_every": log_every},
            "storage": {"path": str(tmp_path / "runs")},
            "failure": {"retries_per_cell": 1},
            "fit": {"enabled": False},
            **spec,
        },
    }
    if uri:
        doc["spec"]["tracking"] = {"mlflow_uri": uri}
    if fault:
        doc["spec"]["fault_injection"] = fault
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _env():
    return {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1"}


def _vlmscale(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=_env())


def _runs(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vlmscale.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("vlmscale.role") == "cell"]
    return parents, children


def kill_midway(driver: subprocess.Popen, finished, cells: int, timeout: float = 600) -> None:
    """SIGKILL ``driver`` once ``finished()`` counts some but not all of its ``cells``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if 0 < finished() < cells:
            break
        assert driver.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()


@pytest.fixture
def no_ray_left():
    yield
    # A clean run leaves nothing within a second. After a SIGKILLed driver its raylet, GCS and
    # workers go within seconds; the raylet's two agents notice its death at once but then wait out
    # a hard-coded 60 s RPC to the dead GCS (ray._private.utils.publish_error_to_driver) before
    # exiting. Idle, holding nothing, they are stopped here once nothing else is left.
    deadline = time.time() + 150
    while True:
        left = ray_processes()
        stray = [p for p in left if not orphaned_agent(p)]
        if not stray or time.time() > deadline:
            break
        time.sleep(0.5)
    assert stray == [], "Ray processes outlived the test"
    for p in left:
        with contextlib.suppress(ProcessLookupError):  # it may end on its own meanwhile
            os.kill(int(p.split()[0]), signal.SIGKILL)

"""Helpers for tests that start a real local Ray cluster."""

from __future__ import annotations

import os
import subprocess
import time


def ray_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "raylet|gcs_server|ray::"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def orphaned_agent(process: str) -> bool:
    """A line of :func:`ray_processes` that is a raylet's agent whose raylet is gone."""
    pid, _, cmd = process.partition(" ")
    if not cmd.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return False
    try:
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        parent = open(f"/proc/{ppid}/cmdline", "rb").read()
    except (OSError, ValueError, IndexError):
        return True  # it, or its parent, is gone
    return b"raylet" not in parent


def start_ray(num_cpus: int = 2):
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    from orchestrator.run.cluster import WORKER_ENV

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**WORKER_ENV, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}})
    return ray


def stop_ray(timeout: float = 30.0) -> list[str]:
    """Shut Ray down and wait until no Ray process is left; returns what is still running."""
    import ray

    ray.shutdown()
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = ray_processes()
        if not left:
            return []
        time.sleep(0.5)
    return ray_processes()

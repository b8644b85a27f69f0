"""The local Ray cluster a run starts (orchestrator/run/cluster.py), as its cells see it."""

from __future__ import annotations

import os

from tests.support.ray_utils import stop_ray


def test_cells_run_at_the_drivers_priority_and_get_the_worker_environment():
    """Ray starts its workers at nice 15; beside any other busy process a cell then crawls (4 % of a
    core, measured). A run's tasks and actors — a trial, a Ray Train worker — run at the driver's
    niceness and see the worker environment."""
    import ray

    from orchestrator.run.cluster import CELL_SLOT, WORKER_ENV, start_ray

    resources = start_ray(None, num_cpus=1)
    try:
        assert resources["CPU"] == 1 and resources[CELL_SLOT] == 1

        @ray.remote(num_cpus=1)
        class Trial:
            def seen(self):
                return os.nice(0), {k: os.environ.get(k) for k in WORKER_ENV}

        @ray.remote(num_cpus=1)
        def task():
            return os.nice(0)

        niceness, env = ray.get(Trial.remote().seen.remote(), timeout=120)
        assert niceness == os.nice(0) and ray.get(task.remote(), timeout=120) == os.nice(0)
        assert env == WORKER_ENV
    finally:
        assert stop_ray() == []

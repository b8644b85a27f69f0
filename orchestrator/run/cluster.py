"""The Ray cluster a run uses: a local one started here or one joined at an address, with the
environment every worker gets and how many cells fit on it at once.

Trial drivers hold no CPU when a cell is a Ray Train job: each holds one ``CELL_SLOT``, a custom
resource this driver gives the local node (and the KubeRay head advertises), so drivers can never
starve their own workers. Ray is imported inside the functions.
"""

from __future__ import annotations

import os

from ..errors import SpecError
from ..spec import CELL_SLOT, Experiment

WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    "TRANSFORMERS_VERBOSITY": "error",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
    # workers' logs are read in `kubectl logs`: no progress bars from transformers' save/load
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # Ray starts workers at nice 15 (to keep its own daemons responsive): on a machine anything else
    # uses, cells then get a few percent of a core (measured: 4 % beside two busy processes). A cell
    # is the work; its workers run at the driver's priority, as Ray's own job supervisor does.
    "RAY_worker_niceness": "0",
}


def start_ray(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    """Join the cluster at ``address`` (else ``$RAY_ADDRESS``'s caller decides) or start a local one;
    returns its resources."""
    import ray

    if ray.is_initialized():
        return dict(ray.cluster_resources())
    import logging

    env = {"env_vars": WORKER_ENV}
    level = logging.ERROR if os.environ.get("VLMSCALE_QUIET") == "1" else logging.INFO
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level=level)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        # one slot per CPU is an upper bound; the Tuner's max_concurrent_trials is the real limit
        ray.init(num_cpus=cpus, resources={CELL_SLOT: cpus}, include_dashboard=False, log_to_driver=False,
                 runtime_env=env, logging_level=level)
    return dict(ray.cluster_resources())


def has_cell_slots() -> bool:
    import ray

    return ray.cluster_resources().get(CELL_SLOT, 0) >= 1


def derive_concurrency(exp: Experiment, cluster: dict[str, float], cells: int) -> int:
    """How many cells fit at once: every cell's workers must get their CPUs and GPUs."""
    r = exp.spec.resources
    cpu, gpu = r.workers_per_cell * r.cpus_per_worker, r.workers_per_cell * r.gpus_per_worker
    limits = [int(cluster.get("CPU", 0) // cpu)]
    if gpu > 0:
        limits.append(int(cluster.get("GPU", 0) // gpu))
    fit = min(limits)
    if fit < 1:
        have = f"{cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs"
        raise SpecError(
            f"{exp.name}: one cell needs {cpu:g} CPUs and {gpu:g} GPUs (resources.workers_per_cell x per-worker) "
            f"but the Ray cluster has {have}; lower spec.resources or use a bigger cluster"
        )
    if r.max_concurrent_cells:
        fit = min(fit, r.max_concurrent_cells)
    return max(1, min(fit, max(cells, 1)))

"""How a cell is launched: a Ray Train ``TorchTrainer`` (Train V2 APIs) for several workers or
DeepSpeed, or the Tune trial's own process for a single DDP worker (``train_in_trial``).

Used by the orchestrator's per-cell Tune function and directly by tests. The process-group
backend is NCCL when the workers have GPUs and gloo otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import CellConfig


@dataclass(frozen=True)
class WorkerResources:
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


def build_trainer(cell: CellConfig, resources: WorkerResources, storage_path: str, name: str,
                  max_failures: int = 0, callbacks: list | None = None, stop_file: str | None = None,
                  answers_dir: str | None = None):
    """``stop_file``: where a stop request appears (the workers checkpoint and end at their next log
    step); ``answers_dir``: where the benchmarks' answers are kept."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from .train import train_loop_per_worker

    per_worker = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config={"cell": cell.to_dict(), "stop_file": stop_file, "answers_dir": answers_dir},
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources.num_workers, use_gpu=resources.use_gpu, resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or [],
        ),
    )


def metrics_log_callback(path: str):
    """A Ray Train ``UserCallback`` appending every report (rank 0's metrics, one JSON per line) to ``path``.

    It runs in the Train controller process; a local file works for single-node runs and a shared
    filesystem path for clusters.
    """
    from ray.train import UserCallback

    from .session import append_progress

    class MetricsLog(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            append_progress(path, metrics[0], checkpoint.path if checkpoint is not None else None)

    return MetricsLog()


def needs_ray_train(cell: CellConfig, resources: WorkerResources) -> bool:
    """Several workers (a process group to form) or DeepSpeed (its engine wants one): Ray Train.
    FSDP on one worker shards nothing and trains in the trial, as DDP does."""
    return resources.num_workers > 1 or cell.train.strategy == "deepspeed"


def train_in_trial(cell: CellConfig, root: str, progress_path: str, stop_file: str | None = None,
                   answers_dir: str | None = None) -> tuple[dict[str, float], str | None]:
    """Train a single-worker cell in this (Tune trial) process; returns the final metrics and the
    last checkpoint's directory."""
    from .session import TrialSession
    from .train import train

    session = TrialSession(root, progress_path, stop_file=stop_file, answers_dir=answers_dir)
    metrics = train(cell, session)
    found = session.checkpoints()
    return metrics, str(found[-1]) if found else None

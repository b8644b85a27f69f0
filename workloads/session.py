"""Where a training run reports to and restores from: a Ray Train worker, or a plain process.

The training loop talks only to this small interface, so the exact same loop runs as a Ray Train
``train_loop_per_worker`` and in-process (unit tests, benchmarks, debugging with pdb).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

from .storage import append_line, download_dir, is_remote, path_of, publish_dir, remove_tree


def append_progress(path: str | Path, metrics: dict, checkpoint_path: str | None = None) -> None:
    """One report as a JSON line of the cell's progress file (what ``vlmscale status`` and the
    MLflow backfill read), with the checkpoint it left, if any."""
    record = dict(metrics)
    if checkpoint_path is not None:
        record["checkpoint_path"] = checkpoint_path
    append_line(path, json.dumps(record))


class Session(Protocol):
    rank: int
    world_size: int
    device: torch.device
    answers_dir: str | None  # where rank 0 writes the cell's benchmark answers (None: not kept)

    def restore_dir(self) -> contextlib.AbstractContextManager[Path | None]:
        """The latest checkpoint as a local directory, or None for a fresh start."""

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        """Publish metrics (all ranks call it together); attach a checkpoint directory if given."""

    def stop_requested(self) -> bool:
        """Whether the run was asked to stop (SIGINT, SIGTERM): the loop checkpoints and ends."""


def _stop_file_exists(path: str | None) -> bool:
    if path is None:
        return False
    try:
        return path_of(path).exists()
    except OSError:  # storage hiccup: no stop today
        return False


class RaySession:
    """Inside ``TorchTrainer(train_loop_per_worker=…)`` (Ray Train V2 APIs)."""

    def __init__(self, stop_file: str | None = None, answers_dir: str | None = None):
        import ray.train
        import ray.train.torch

        self.stop_file, self.answers_dir = stop_file, answers_dir
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def restore_dir(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as d:
            yield Path(d)

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def stop_requested(self) -> bool:
        return _stop_file_exists(self.stop_file)


class TuneSession:
    """Inside a Ray Tune function trainable — one process, no Train worker group (the short
    trials of learning-rate calibration): reports go to Tune, which may stop the trial."""

    def __init__(self):
        self.rank, self.world_size = 0, 1
        self.answers_dir: str | None = None
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")

    @contextlib.contextmanager
    def restore_dir(self) -> Iterator[Path | None]:
        yield None  # trials are short: a failed one is rerun from the start

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        from ray import tune

        tune.report(dict(metrics))

    def stop_requested(self) -> bool:
        return False  # a calibration trial is short: Tune stops it


class LocalSession:
    """One process, no Ray: checkpoints are kept under ``root`` (atomic rename), metrics in memory.

    ``root`` may be on object storage (``s3://…``): a checkpoint is then uploaded file by file,
    seals last, and a resume downloads the newest complete one.

    ``device`` is where the model trains (CPU by default, e.g. ``cuda:0``); the process may hold a
    one-rank process group of its own (``torch.distributed.init_process_group``), as GPU tests do
    to run the NCCL code path without Ray.
    """

    def __init__(self, root: str | Path, keep: int = 2, echo: bool = False, device: str | torch.device = "cpu",
                 stop_file: str | None = None, answers_dir: str | None = None):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise RuntimeError("LocalSession runs one process; use Ray Train (RaySession) for several workers")
        self.rank, self.world_size, self.device = 0, 1, torch.device(device)
        self.root = path_of(root)
        self.remote = is_remote(root)
        self.keep, self.echo, self.stop_file, self.answers_dir = keep, echo, stop_file, answers_dir
        self.history: list[dict[str, float]] = []

    def checkpoint_path(self, step: float) -> Path:
        return self.root / f"checkpoint_{int(step):08d}"

    def checkpoints(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))

    @contextlib.contextmanager
    def restore_dir(self) -> Iterator[Path | None]:
        found = self.checkpoints()
        if not found or not self.remote:
            yield found[-1] if found else None
            return
        from .checkpoint import newest_complete

        complete = newest_complete(found[-1])  # judged where it is stored: only that one is fetched
        if complete is None:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="vlmscale-restore-") as d:
            yield download_dir(complete, Path(d) / complete.name)

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        self.history.append(dict(metrics))
        if self.echo:
            print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}))
        if checkpoint_dir is None:
            return
        final = self.checkpoint_path(metrics["step"])
        if self.remote:  # many objects, seals last: a cut upload is found incomplete on resume
            from .checkpoint import SEAL

            publish_dir(Path(checkpoint_dir), final, last=(SEAL.format(rank=self.rank),))
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging_", dir=self.root))
            shutil.copytree(checkpoint_dir, staging, dirs_exist_ok=True)
            publish_dir(staging, final)  # a checkpoint directory is either complete or absent
        for old in self.checkpoints()[: -self.keep]:
            remove_tree(old)

    def stop_requested(self) -> bool:
        return _stop_file_exists(self.stop_file)


class TrialSession(LocalSession):
    """One single-worker cell inside a Ray Tune trial, with no Ray Train worker group to start.

    Measured on 2 CPU cores, a Ray Train ``fit()`` costs 8-12 s of controller and worker start-up
    and teardown however short the cell, which is most of a small cell's time; here the trial's
    own (reused) process trains. Checkpoints persist under ``root`` exactly as ``LocalSession``
    keeps them (staged, renamed, two kept), so a retried trial — or a restarted driver — resumes
    from the newest complete one; every report is appended to ``progress_path`` and sent to Tune.
    """

    def __init__(self, root: str | Path, progress_path: str | Path, device: str | torch.device | None = None,
                 stop_file: str | None = None, answers_dir: str | None = None):
        super().__init__(root, keep=2, device=device or ("cuda:0" if torch.cuda.is_available() else "cpu"),
                         stop_file=stop_file, answers_dir=answers_dir)
        self.progress_path = progress_path

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        from ray import tune

        super().report(metrics, checkpoint_dir)
        checkpoint = str(self.checkpoint_path(metrics["step"])) if checkpoint_dir is not None else None
        append_progress(self.progress_path, metrics, checkpoint)
        tune.report({**metrics, **({"checkpoint_path": checkpoint} if checkpoint else {})})

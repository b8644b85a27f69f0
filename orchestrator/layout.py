"""Where an experiment keeps its state, and the ledger of finished cells.

    <storage>/<name>/
        experiment.json      the validated spec and its digest (what a restarted driver resumes)
        driver.lock          who runs it now: host, pid, since, heartbeat (orchestrator/lock.py)
        vision/              the pretrained tiny vision tower (embedded default)
        cells/<key>/         Ray Train runs: checkpoints of each cell
        tune/                Ray Tune experiment state
        results/<key>.json   the ledger: final metrics of every finished cell (atomic writes)
        progress/<key>.jsonl every report of each cell (live progress)
        mlflow.db, mlartifacts/   the default local MLflow store
        fit/                 the fitted law, plots, next.yaml

The directory is local (or a mounted shared volume) or on object storage (``s3://``, ``gs://``:
workloads/storage.py). Pure: no heavy imports. Every write is atomic (temp file + rename, or one
object PUT), so a killed driver leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.storage import is_remote, local_mirror, path_of, write_text_atomic


def atomic_write_text(path, text: str) -> None:
    write_text_atomic(path, text)


def atomic_write_json(path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class ExperimentDir:
    root: Path  # or a upath.UPath on object storage (workloads/storage.py)

    @classmethod
    def of(cls, storage: str, name: str) -> "ExperimentDir":
        if is_remote(storage):
            return cls(path_of(storage.rstrip("/") + "/" + name))
        return cls(Path(storage).expanduser().resolve() / name)

    @classmethod
    def at(cls, root: str) -> "ExperimentDir":
        """The directory a trial was handed (``str(exp_dir.root)``)."""
        return cls(path_of(root))

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    @property
    def local(self) -> Path:
        """Where files that must be local live: the directory itself, or its cache for object storage."""
        return local_mirror(self.root) if self.remote else self.root

    @property
    def manifest(self) -> Path:
        return self.root / "experiment.json"

    @property
    def vision(self) -> Path:
        return self.root / "vision"

    @property
    def cells(self) -> Path:
        return self.root / "cells"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def progress(self) -> Path:
        return self.root / "progress"

    @property
    def fit(self) -> Path:
        return self.root / "fit"

    @property
    def mlflow_uri(self) -> str:
        # sqlite needs a local file: with object storage the default store stays on this machine
        return f"sqlite:///{self.local / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.local / "mlartifacts").as_uri()

    def result_path(self, key: str) -> Path:
        return self.results / f"{key}.json"

    def progress_path(self, key: str) -> Path:
        return self.progress / f"{key}.jsonl"

    def finished(self) -> dict[str, dict[str, Any]]:
        """The ledger: cell key → its final record."""
        if not self.results.exists():
            return {}
        paths = sorted(self.results.glob("*.json"))
        if self.remote and paths:  # one round trip for all records, not one per cell
            blobs = paths[0].fs.cat([p.path for p in paths])
            texts = [blobs[p.path] for p in paths]
        else:
            texts = [p.read_bytes() for p in paths]
        out = {}
        for p, text in zip(paths, texts):
            try:
                out[p.stem] = json.loads(text)
            except json.JSONDecodeError:  # cannot happen with atomic writes; tolerate hand edits
                continue
        return out

    def finished_record(self, key: str) -> dict[str, Any] | None:
        """One cell's ledger entry, or None."""
        try:
            return json.loads(self.result_path(key).read_text())
        except FileNotFoundError:
            return None

    def record_finished(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.result_path(key), record)

    def progress_history(self, key: str) -> list[dict[str, Any]]:
        """Every report of a cell, in order (a line cut by a kill is skipped)."""
        try:
            text = self.progress_path(key).read_text()
        except FileNotFoundError:
            return []
        out = []
        if text:
            for line in text.splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def last_progress(self, key: str) -> dict[str, Any] | None:
        history = self.progress_history(key)
        return history[-1] if history else None

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

Pure: no heavy imports. Every write is atomic (temp file + rename), so a killed driver leaves
either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class ExperimentDir:
    root: Path

    @classmethod
    def of(cls, storage: str, name: str) -> "ExperimentDir":
        if storage.startswith("s3://"):
            raise ValueError("a local view of s3:// storage is not available; run where the storage is mounted")
        return cls(Path(storage).expanduser().resolve() / name)

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
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.root / "mlartifacts").as_uri()

    def result_path(self, key: str) -> Path:
        return self.results / f"{key}.json"

    def progress_path(self, key: str) -> Path:
        return self.progress / f"{key}.jsonl"

    def finished(self) -> dict[str, dict[str, Any]]:
        """The ledger: cell key → its final record."""
        if not self.results.is_dir():
            return {}
        out = {}
        for p in sorted(self.results.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except json.JSONDecodeError:  # cannot happen with atomic writes; tolerate hand edits
                continue
        return out

    def finished_record(self, key: str) -> dict[str, Any] | None:
        """One cell's ledger entry, or None."""
        path = self.result_path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def record_finished(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.result_path(key), record)

    def progress_history(self, key: str) -> list[dict[str, Any]]:
        """Every report of a cell, in order (a line cut by a kill is skipped)."""
        path = self.progress_path(key)
        out = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def last_progress(self, key: str) -> dict[str, Any] | None:
        history = self.progress_history(key)
        return history[-1] if history else None

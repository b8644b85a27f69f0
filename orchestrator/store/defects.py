"""Defects in data files, shared between the cells of a run.

A cell that fails on a defect in a file it reads (a cut LLaVA record, an undecodable image, a
benchmark line its scorer cannot score: :class:`workloads.failures.DataError`) records the file
here; a cell of the same run that reads that file then ends before it builds a model, naming the
file, the defect and the cell that found it — one cell's hour is spent learning it, not every
cell's. A defect counts only while the file is as it was (size and modification time, for a local
file), and each ``vlmscale run`` starts with none: fixing the file and running again retries every
cell that ended on it.

    <experiment>/defects/<hash of the path>.json   {path, cause, cell, stat}
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from workloads.storage import is_remote, remove_tree

from .layout import ExperimentDir, atomic_write_json


@dataclass(frozen=True)
class Defect:
    path: str
    cause: str
    cell: str  # the cell that found it

    def line(self) -> str:
        return (f"not tried: {self.path} has a defect that cell {self.cell} found ({self.cause}); "
                "fix the file (vlmscale validate --deep names every defect) and run again")


def _stat(path: str) -> list[int] | None:
    """What tells a changed file from the one that failed; None where it cannot be known cheaply."""
    if is_remote(path):
        return None
    try:
        s = os.stat(path)
    except OSError:
        return None  # a missing file: it stays a defect until it appears
    return [s.st_size, s.st_mtime_ns]


def _record_path(exp_dir: ExperimentDir, path: str):
    return exp_dir.root / "defects" / f"{hashlib.sha256(path.encode()).hexdigest()[:20]}.json"


def record(exp_dir: ExperimentDir, path: str, cause: str, cell: str) -> None:
    """Keep that ``path`` has a defect. Best effort: the cell's own failure is recorded either way."""
    try:
        atomic_write_json(_record_path(exp_dir, path), {"path": path, "cause": cause, "cell": cell,
                                                        "stat": _stat(path)})
    except OSError:
        pass


def found(exp_dir: ExperimentDir, files: tuple[str, ...]) -> Defect | None:
    """The first of ``files`` with a defect recorded in this run that still holds, or None."""
    for path in files:
        try:
            doc = json.loads(_record_path(exp_dir, path).read_text())
        except (FileNotFoundError, OSError, ValueError):
            continue  # none, or unreadable: the cell finds the defect itself
        if isinstance(doc, dict) and doc.get("path") == path and doc.get("stat") == _stat(path):
            return Defect(path, str(doc.get("cause", "")), str(doc.get("cell", "")))
    return None


def clear(exp_dir: ExperimentDir) -> None:
    """A new run: every file is tried again."""
    remove_tree(exp_dir.root / "defects")

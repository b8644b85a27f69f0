"""Checkpoint integrity: each rank seals what it wrote; a resume takes the newest sealed checkpoint.

A checkpoint can be registered and still be cut short — a node that dies while a shared
filesystem is still flushing, a copy interrupted on a non-atomic store. Each rank writes, last,
``complete_rank<r>.json`` listing its files and their sizes; a checkpoint is complete when every
such list matches the files on disk. ``newest_complete`` walks from the checkpoint the session
offers back through its older siblings (Ray Train and LocalSession both keep a few) and returns
the first complete one, so a half-written checkpoint costs the steps since the one before it,
not the cell.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SEAL = "complete_rank{rank}.json"


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.startswith("complete_rank")}


def seal(directory: Path, rank: int) -> None:
    """Record the files of ``directory`` as this rank's (each rank seals its own staging directory)."""
    path = directory / SEAL.format(rank=rank)
    with open(path, "w") as f:
        json.dump({"files": _files(directory)}, f)
        f.flush()
        os.fsync(f.fileno())


def problem(directory: Path) -> str | None:
    """Why ``directory`` is not a complete checkpoint, or None."""
    seals = sorted(directory.glob("complete_rank*.json"))
    if not seals:  # written before seals existed: the state file is written last
        return None if (directory / "state.json").exists() else "no seal and no state.json"
    for s in seals:
        try:
            files = json.loads(s.read_text())["files"]
        except (OSError, ValueError, KeyError):
            return f"{s.name} is unreadable"
        for name, size in files.items():
            p = directory / name
            if not p.is_file():
                return f"{name} is missing"
            if p.stat().st_size != size:
                return f"{name} has {p.stat().st_size} of {size} bytes"
    return None


def older_siblings(latest: Path) -> list[Path]:
    """Checkpoints beside ``latest`` that are older than it, newest first (names sort by time)."""
    parent = latest.parent
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and p.name.startswith("checkpoint_")
                   and p.name < latest.name), reverse=True)


def newest_complete(latest: Path, echo=print) -> Path | None:
    why_not_latest = problem(latest)
    if why_not_latest is None:
        return latest
    for candidate in older_siblings(latest):
        if problem(candidate) is None:
            echo(f"[vlmscale] checkpoint {latest.name} is incomplete ({why_not_latest}); "
                 f"resuming from {candidate.name}")
            return candidate
    echo(f"[vlmscale] no complete checkpoint beside {latest}: starting the cell over")
    return None

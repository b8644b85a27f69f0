"""Where this user's experiments live: a per-user index of name → storage root, so that a bare
name (``vlmscale status quickstart``) resolves from any folder.

    $XDG_STATE_HOME/vlmscale/experiments.json   (default ~/.local/state/vlmscale/experiments.json)

Every ``vlmscale run`` records its experiment before anything trains. A name is resolved by
``--storage``, else ``$VLMSCALE_STORAGE``, else this index, else ``./vlmscale-runs``; an entry whose
storage no longer holds the experiment is passed over, and a name kept in two places is an error
that lists both (pass ``--storage`` to choose). Writes are atomic under an advisory lock (two runs
starting at once both get recorded); the file is checked when read, and bounded in size.
Pure: no heavy imports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .layout import NAME, ExperimentDir

STATE_ENV = "XDG_STATE_HOME"
MAX_ENTRIES = 10_000  # the oldest entries go first beyond this: a user's whole history, bounded
MAX_BYTES = 8 << 20


def index_path() -> Path:
    base = os.environ.get(STATE_ENV) or "~/.local/state"
    return Path(base).expanduser() / "vlmscale" / "experiments.json"


class IndexDamaged(StorageError):
    """The index file is damaged: one line naming it and what to do."""


def _problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("experiments"), list):
        return "not a JSON object with an experiments list"
    for i, e in enumerate(doc["experiments"]):
        if not (isinstance(e, dict) and isinstance(e.get("name"), str) and NAME.fullmatch(e["name"])
                and isinstance(e.get("storage"), str) and e["storage"]):
            return f"entry {i} is not {{name, storage}}"
    return None


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise IndexDamaged(f"{path}: larger than {MAX_BYTES >> 20} MiB; move it aside (runs record their "
                              "experiments again)")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexDamaged(f"{path}: not valid JSON ({e}); move it aside — the next `vlmscale run` of each "
                          "experiment records it again, and --storage finds any meanwhile") from None
    why = _problem(doc)
    if why:
        raise IndexDamaged(f"{path}: {why}; move it aside — the next `vlmscale run` of each experiment records "
                          "it again, and --storage finds any meanwhile")
    return doc["experiments"]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def canonical(storage: str) -> str:
    """A storage root as the index keeps it: an absolute path, or the bucket URL as given."""
    from workloads.storage import is_remote

    return storage.rstrip("/") if is_remote(storage) else str(Path(storage).expanduser().resolve())


def record(name: str, storage: str) -> None:
    """Remember that experiment ``name`` lives under ``storage`` (idempotent). Best effort: a home
    directory that cannot be written never stops a run — the name then needs --storage."""
    path = index_path()
    where = canonical(storage)
    try:
        with _locked(path):
            entries = [e for e in _read(path) if not (e["name"] == name and e["storage"] == where)]
            entries.append({"name": name, "storage": where, "recorded": time.time()})
            entries = entries[-MAX_ENTRIES:]
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"experiments": entries}, indent=1) + "\n")
            os.replace(tmp, path)
    except OSError:
        pass


def places(name: str) -> list[str]:
    """The storage roots the index knows for ``name`` that still hold it, newest first."""
    out = []
    for e in reversed(_read(index_path())):
        if e["name"] == name and e["storage"] not in out:
            try:
                if ExperimentDir.of(e["storage"], name).manifest.is_file():
                    out.append(e["storage"])
            except (OSError, ValueError):  # a bucket out of reach: not a place we can use now
                continue
    return out


def names() -> list[str]:
    """Every name the index holds (for completion; not checked against storage)."""
    try:
        return sorted({e["name"] for e in _read(index_path())})
    except StorageError:
        return []


def resolve(name: str, storage: str | None = None, default: str = "./vlmscale-runs") -> str:
    """The storage root to look for experiment ``name`` under: ``storage`` (--storage), else
    $VLMSCALE_STORAGE, else where the index has it, else ``default``."""
    from ..spec import STORAGE_ENV

    chosen = storage or os.environ.get(STORAGE_ENV)
    if chosen:
        return chosen
    found = places(name)
    if len(found) > 1:
        raise StorageError(f"two experiments are named {name!r}: " + " and ".join(found)
                           + f" (recorded in {index_path()}); pass --storage with the one you mean, or the spec file")
    return found[0] if found else default

"""What may be resumed or counted under a spec: a cell's settings against the experiment's state.

A cell's result depends on its settings (spec/cells.py: ``Cell.settings``, hashed as
``Cell.digest``). The experiment keeps, beside every cell's state, the settings it was made under:
a finished cell's ledger record carries them, and ``cells/<key>/identity.json`` those of its
checkpoints (written before the cell first trains). Before a run writes anything it compares:

* a finished cell or a checkpoint made under other settings is never resumed into, nor counted
  under the new spec: ``run`` refuses with what changed and the two ways out;
* ``run --restart-changed`` moves those cells' state under ``superseded/`` (kept, never deleted)
  and trains them again from scratch into new MLflow runs (runs are found by key *and* digest);
* every reader (``status``, ``results``, ``fit``) counts a record only under the settings that
  produced it (:func:`counts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..protocols import LedgerRecord
from ..spec import Cell
from ..store.layout import ExperimentDir, atomic_write_json

UNKNOWN = "unknown"  # the digest of state an older vlmscale wrote without its settings


@dataclass(frozen=True)
class Change:
    """A cell whose state was made under other settings than the spec now gives it."""

    key: str
    what: str  # "finished" or "checkpointed"
    old_digest: str
    diffs: tuple[str, ...]


def counts(record: LedgerRecord, cell: Cell) -> bool:
    """Whether a finished record counts as ``cell``'s result: made under the same settings, or
    imported (an import is checked against the spec when it is imported)."""
    return record.counts_for(cell.digest)


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, ...]:
    """``field old → new`` for every setting that differs."""
    if not isinstance(old, dict):
        return ("its settings were not recorded (made by an older vlmscale)",)
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(unset)"), new.get(k, "(unset)")
        if a != b:
            out.append(f"{k} {_short(a)} → {_short(b)}")
    return tuple(out) or ("its settings hash differently (a vlmscale upgrade changed what they hold)",)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 48 else text[:45] + "..."


def read_identity(exp_dir: ExperimentDir, key: str) -> dict[str, Any] | None:
    """The settings a cell's checkpoints were made under: {"digest", "settings"}; ``{}`` when the
    cell has state but no readable identity; None when it has no state."""
    try:
        doc = json.loads(exp_dir.identity_path(key).read_text())
    except FileNotFoundError:
        return {} if (exp_dir.cells / key).exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}
    return doc if isinstance(doc, dict) and isinstance(doc.get("digest"), str) else {}


def write_identity(exp_dir: ExperimentDir, cell: Cell) -> None:
    """Before a cell first trains: the settings its checkpoints will be made under."""
    atomic_write_json(exp_dir.identity_path(cell.key), {"digest": cell.digest, "settings": cell.settings})


def changes(exp_dir: ExperimentDir, cells: list[Cell], finished: dict[str, LedgerRecord]) -> list[Change]:
    """The cells whose finished record or checkpoints were made under other settings."""
    out = []
    for cell in cells:
        record = finished.get(cell.key)
        if record is not None:
            if not counts(record, cell):
                out.append(Change(cell.key, "finished", str(record.config_digest or UNKNOWN),
                                  diff(record.settings or None, cell.settings)))
            continue
        ident = read_identity(exp_dir, cell.key)
        if ident is not None and ident.get("digest") != cell.digest:
            out.append(Change(cell.key, "checkpointed", ident.get("digest") or UNKNOWN,
                              diff(ident.get("settings"), cell.settings)))
    return out


def refusal(name: str, found: list[Change]) -> SpecError:
    """One line: which cells, what changed, and the two ways out."""
    diffs = list(dict.fromkeys(d for c in found for d in c.diffs))
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    keys = ", ".join(c.key for c in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    kinds = " and ".join(sorted({c.what for c in found}))
    return SpecError(f"{name}: the spec changed what {len(found)} {kinds} cell(s) were trained under ({shown}): "
                     f"{keys}. Nothing was written. Rerun with --restart-changed to train them again under the new "
                     "spec (the old state is kept under superseded/, in its own MLflow runs), or restore the "
                     "settings they ran under")


def supersede(exp_dir: ExperimentDir, found: list[Change]) -> None:
    """Move each changed cell's state (record, checkpoints, progress, error, log) aside."""
    from workloads.storage import move

    for c in found:
        dest = exp_dir.superseded(c.key, c.old_digest)
        for src, name in ((exp_dir.result_path(c.key), "result.json"), (exp_dir.cells / c.key, "cells"),
                          (exp_dir.progress_path(c.key), "progress.jsonl"), (exp_dir.error_path(c.key), "error.json"),
                          (exp_dir.log_path(c.key), "cell.log")):
            move(src, dest / name)

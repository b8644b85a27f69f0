"""Every state file an experiment keeps is checked when it is read.

A file cut short (a full disk, a copy interrupted), edited by hand or written by something else
is one line naming it and what to do — exit 2 — never a traceback from deep inside, never a cell
silently dropped from a fit. What can be made again is: ``vlmscale repair NAME`` (and ``vlmscale
run``, for the ledger, by itself) moves a damaged file under ``<experiment>/damaged/`` — kept,
never deleted — so a finished cell is evaluated again from its final checkpoint (no training),
a calibration is searched again, and a round log is rebuilt from what the ledger holds. The lock
(orchestrator/store/lock.py) and the tower (workloads/pretrain_vision.py) check themselves.
Pure: no heavy imports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import StateError

Check = Callable[[Any], "str | None"]  # a document → what is wrong with it, or None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def manifest_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if not isinstance(doc.get("spec"), dict):
        return "no spec"
    if "spec_yaml" in doc and not isinstance(doc["spec_yaml"], str):
        return "spec_yaml is not text"
    return None


def rounds_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("rounds"), list):
        return "no list of rounds"
    for i, r in enumerate(doc["rounds"]):
        if not isinstance(r, dict) or not isinstance(r.get("cells"), list):
            return f"round {i + 1} has no list of cells"
        for c in r["cells"]:
            if not isinstance(c, dict) or not all(k in c for k in ("llm", "visual_tokens", "compressor", "task", "seed")):
                return f"a cell of round {i + 1} lacks llm, visual_tokens, compressor, task or seed"
            if "forecast" in c and not _numbers(c["forecast"], ("value", "low", "high", "level")):
                return f"a cell of round {i + 1} has a forecast without numbers value, low, high and level"
        check = (r.get("fit") or {}).get("forecast_check") if isinstance(r.get("fit"), dict) else None
        if check is not None and not _numbers(check, ("round", "cells", "median_rel_error", "inside", "level")):
            return f"round {i + 1}'s forecast check lacks numbers round, cells, median_rel_error, inside or level"
    return None


def _numbers(doc: Any, keys: tuple[str, ...]) -> bool:
    return isinstance(doc, dict) and all(_number(doc.get(k)) for k in keys)


def calibration_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("sizes"), dict):
        return "no sizes"
    for llm, entry in doc["sizes"].items():
        if not isinstance(entry, dict) or not _number(entry.get("lr")) or not isinstance(entry.get("settings"), str):
            return f"the entry of {llm} has no lr or settings"
    return None


def profile_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        return "no rows"
    return None


def parse(text: bytes | str, path, check: Check, fix: str) -> Any:
    """The checked document of ``path`` whose content is ``text``; :class:`StateError` if it is
    not JSON or ``check`` finds it wrong."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StateError(f"{path}: damaged (not JSON: cut short, or not written by vlmscale); {fix}") from None
    problem = check(doc)
    if problem:
        raise StateError(f"{path}: damaged ({problem}); {fix}")
    return doc


def read(path, check: Check, fix: str, missing: Any = None) -> Any:
    """The checked document at ``path``, or ``missing`` when there is none."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return missing
    return parse(text, path, check, fix)


def set_aside(root, path) -> Any:
    """Move a damaged file under ``<experiment>/damaged/`` (named with the time); where it went."""
    from workloads.storage import move

    dest = root / "damaged" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.parent.name}-{path.name}"
    move(path, dest)
    return dest


def repair_fix(name: str) -> str:
    return (f"`vlmscale repair {name}` sets it aside under damaged/ so that it is made again (a finished cell "
            "is evaluated again from its final checkpoint)")

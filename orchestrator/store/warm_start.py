"""Warm start: finished cells brought in from another experiment or a results CSV.

A study grows in rounds and across experiments; a finished cell is never trained twice. Each
``spec.imports`` entry names another experiment (its ledger under a storage directory) or a CSV in
the format ``vlmscale results NAME --format csv`` writes. Its finished cells enter this
experiment's ledger as records marked ``imported_from``: the scheduler skips them, MLflow shows
them as finished child runs tagged with their source, and fits and proposals count them — also
the ones outside this experiment's grid. Importing is idempotent and never overwrites a cell this
experiment has finished itself. Pure: no ray, torch or mlflow.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..protocols import LedgerRecord
from ..spec import Experiment, cell_key
from .layout import ExperimentDir

PARAMS = ("llm", "visual_tokens", "compressor", "task", "seed")
INTEGER_PARAMS = ("visual_tokens", "seed")


def _from_experiment(name: str, storage: str) -> tuple[str, dict[str, LedgerRecord]]:
    source = ExperimentDir.of(storage, name)
    if not source.manifest.is_file():
        raise SpecError(f"spec.imports: no experiment {name!r} under {source.root.parent}; "
                        "give its storage (imports[].storage) or import its results CSV")
    records = {key: record.imported(f"experiment:{name}") for key, record in source.finished().items()}
    return f"experiment {name}", records


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _from_results_csv(path: str) -> tuple[str, dict[str, LedgerRecord]]:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec.imports: {p}: no such file")
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        need = [*PARAMS, "llm_params", "error"]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise SpecError(f"spec.imports: {p}: missing column(s) {', '.join(missing)}; "
                            "import a file written by `vlmscale results NAME --format csv`")
        records = {}
        for line, row in enumerate(reader, start=2):
            if row.get("status") not in (None, "", "finished"):
                continue
            params: dict[str, Any] = {k: row[k] for k in PARAMS}
            try:
                for k in INTEGER_PARAMS:
                    params[k] = int(float(params[k]))
            except ValueError:
                raise SpecError(f"spec.imports: {p}: line {line}: visual_tokens and seed must be integers") from None
            metrics = {k: x for k, v in row.items() if k not in PARAMS and k not in ("cell", "status", "checkpoint")
                       and (x := _number(v)) is not None}
            if "llm_params" not in metrics or "error" not in metrics:
                raise SpecError(f"spec.imports: {p}: line {line}: a finished cell needs numbers in llm_params and error")
            metrics.setdefault("visual_tokens", float(params["visual_tokens"]))
            key = row.get("cell") or cell_key(params["llm"], params["visual_tokens"], params["compressor"],
                                              params["task"], params["seed"])
            records[key] = LedgerRecord(key, metrics, params={"cell": key, **params},
                                        imported_from=f"results:{p.name}")
    return f"results {p.name}", records


def import_cells(exp: Experiment, exp_dir: ExperimentDir, echo=print) -> list[str]:
    """Copy every import's finished cells into the ledger (those it lacks); returns the new keys."""
    added: list[str] = []
    have = exp_dir.finished()
    for entry in exp.spec.imports:
        if entry.experiment is not None:
            what, records = _from_experiment(entry.experiment, entry.storage or str(exp_dir.root.parent))
        else:
            assert entry.results is not None  # the spec requires experiment or results
            what, records = _from_results_csv(entry.results)
        new = [k for k in records if k not in have]
        for key in new:
            exp_dir.record_finished(records[key])
            have[key] = records[key]
        added += new
        if new:
            echo(f"imported {len(new)} finished cells from {what} ({len(records) - len(new)} already here)")
    return added

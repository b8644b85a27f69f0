"""Per-cell results of an experiment, from its ledger and progress files (no MLflow, no Ray).

``vlmscale results NAME`` prints one row per cell as a table, CSV or JSON; ``vlmscale status``
summarises the same rows. Fitting reads the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput, StorageError
from ..protocols import LedgerRecord
from ..spec import STORAGE_ENV, Experiment, load, parse
from ..store.layout import ExperimentDir

COLUMNS = ("cell", "llm", "llm_params", "visual_tokens", "compressor", "task", "seed", "error", "eval_loss",
           "inference_flops_llm", "inference_flops_vlm", "status", "step")


def find_experiment(name_or_file: str, storage: str | None = None, require_state: bool = True
           ) -> tuple[Experiment, ExperimentDir]:
    """An experiment from its spec file, or by name under ``storage`` (else ``$VLMSCALE_STORAGE``,
    else where this user's index has it, else ./vlmscale-runs: orchestrator/store/index.py). Its state
    must exist unless ``require_state`` is False (cluster commands need only the spec): a command
    that finds nothing says so rather than report "0 pending"."""
    from ..store.index import resolve

    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        exp = load(p)
        exp_dir = ExperimentDir.of(exp.storage_root(storage), exp.name)
        if require_state and not exp_dir.manifest.is_file():
            raise StorageError(f"{exp.name} has not run under {exp_dir.root.parent} (no {exp_dir.manifest.name}): "
                            f"start it with `vlmscale run {p}`, or pass --storage (or set {STORAGE_ENV}) "
                            "with the directory that holds it")
        return exp, exp_dir
    exp_dir = ExperimentDir.of(resolve(name_or_file, storage), name_or_file)
    if not exp_dir.manifest.is_file():
        raise StorageError(
            f"no experiment {name_or_file!r} under {exp_dir.root.parent}, nor in the index of your runs: pass the "
            f"spec file, or --storage (or {STORAGE_ENV}) with the directory that holds it"
        )
    manifest = exp_dir.read_manifest()
    exp = parse(manifest["spec"], str(exp_dir.manifest))
    if manifest.get("source_dir"):
        exp._source_dir = Path(manifest["source_dir"])
    return exp, exp_dir


def inference_flops(metrics: dict[str, Any], compressor: str, text_tokens: float) -> dict[str, float | None]:
    """A cell's two inference costs at the experiment's Q — ``inference_flops_llm`` = 2·N·(Q + V),
    ``inference_flops_vlm`` = that plus the tower, the compressor and its question pass — from what
    it reported (orchestrator/scaling/cost.py prices both; the frontier uses the first)."""
    from workloads.compressors import kind

    from ..scaling.cost import llm_prefill_flops, vlm_inference_flops

    n, v = float(metrics["llm_params"]), float(metrics["visual_tokens"])
    out: dict[str, float | None] = {"inference_flops_llm": float(llm_prefill_flops(n, v, text_tokens)),
                                    "inference_flops_vlm": None}
    vision, comp = metrics.get("inference_flops_vision"), metrics.get("inference_flops_compressor")
    reads = metrics.get("compressor_reads_question")
    if reads is None and kind(compressor).needs_query:  # an older record: its question pass is folded in at
        return out                                     # its own prompt's length, which it did not keep
    if vision is not None and comp is not None:
        out["inference_flops_vlm"] = float(vlm_inference_flops(n, v, text_tokens, vision, comp, reads or 0.0))
    return out


def group_errors(metrics: dict[str, Any], groups: dict[str, list[str]]) -> dict[str, float]:
    """``error/<group>``: the mean of its benchmarks' errors (spec.evaluation.groups), for every
    group whose benchmarks the cell has all scored — computed where it is read, so a group added
    later, or a rescore, counts for finished cells too."""
    out = {}
    for group, members in groups.items():
        values = [metrics.get(f"error/{m}") for m in members]
        numbers = [v for v in values if isinstance(v, (int, float))]
        if values and len(numbers) == len(values):
            out[f"error/{group}"] = sum(numbers) / len(numbers)
    return out


def _finished(record: LedgerRecord, compressor: str, text_tokens: float, n: float | None,
              groups: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The row fields of a finished cell's ledger record; ``n``: its N as the study counts it."""
    m = record.metrics
    measured = {f"llm_params_{k}": int(m[metric]) for k, metric in (("non_embedding", "llm_params"),
                                                                    ("total", "llm_params_total")) if metric in m}
    out = {"status": "finished", "llm_params": None if n is None else int(round(n)), **measured,
           "error": m["error"], "eval_loss": m.get("eval_loss"),
           **(inference_flops({"visual_tokens": record.params.get("visual_tokens"), **m, "llm_params": n},
                              compressor, text_tokens) if n is not None else {}),
           "step": int(m.get("step", 0)), **{k: v for k, v in m.items() if k.startswith("error/")},
           **group_errors(m, groups or {})}
    if n is None:
        out["cause"] = "its record does not hold the N the fit counts (spec.fit.parameters): left out of fits"
    if record.checkpoint:
        out["checkpoint"] = record.checkpoint
    if record.imported_from:
        out["imported_from"] = record.imported_from
    return out


def fit_rows(exp: Experiment, table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the law is fitted on: every cell's, or those of ``spec.fit.compressors``."""
    only = exp.spec.fit.compressors
    return table if not only else [r for r in table if r.get("compressor") in only]


def rows(exp: Experiment, exp_dir: ExperimentDir, parameters: str | None = None) -> list[dict[str, Any]]:
    """One row per cell of every round (the grid is round 1), then one per imported cell outside
    them (they count in fits too) and one per finished cell the spec no longer plans whose
    settings it would still give it. A result made under other settings is never a finished row:
    its cell shows ``changed`` (orchestrator/plan/identity.py). ``llm_params`` is N as the study counts it
    (``parameters``, else ``spec.fit.parameters``: orchestrator/spec/sizes.py); the measured counts stay
    beside it (``llm_params_non_embedding``, ``llm_params_total``)."""
    from ..plan.cells import StudyCells
    from ..plan.identity import counts
    from ..spec import make_cell
    from ..spec.sizes import cell_size

    finished = exp_dir.finished()
    q = exp.spec.fit.text_tokens
    f = exp.spec.fit
    groups = exp.spec.evaluation.groups

    def size(llm: str, record: LedgerRecord) -> float | None:
        return cell_size(parameters or f.parameters, llm, record.metrics, f.nominal_sizes)

    out = []
    planned = StudyCells.of(exp, exp_dir).planned()
    for number, cell in planned:
        record = finished.get(cell.key)
        row: dict[str, Any] = {**cell.params(), "llm_params": None, "error": None, "eval_loss": None,
                               "inference_flops_llm": None, "inference_flops_vlm": None, "text_tokens": q,
                               "train_samples": cell.config.train.total_samples, "step": 0, "round": number}
        if record is not None and counts(record, cell):
            row.update(_finished(record, cell.compressor, q, size(cell.llm, record), groups))
        elif record is not None:
            row.update(status="changed", cause="finished under other settings: `vlmscale run --restart-changed` "
                                               "trains it again")
        else:
            last = exp_dir.last_progress(cell.key)
            row["status"] = "started" if last else "pending"
            if last:
                row["step"] = int(last.get("step", 0))
            failed = exp_dir.cell_error(cell.key)
            if failed is not None and not failed.get("transient"):
                row.update(status="errored", cause=failed["cause"], log=failed["log"])
        out.append(row)
    keys = {c.key for _, c in planned}
    lrs = {c.llm: c.config.train.lr for _, c in planned}
    for key, record in sorted(finished.items()):
        if key in keys:
            continue
        params = record.params
        point = tuple(params.get(k) for k in ("llm", "visual_tokens", "compressor", "task", "seed"))
        if not record.imported_from:
            try:  # a cell an earlier grid had: it counts if this spec would train it the same way
                same = None not in point and counts(record, make_cell(exp, *point, lrs=lrs))  # type: ignore[misc,arg-type]  # None ruled out; a point of the wrong types is caught below
            except (BadInput, ValueError, TypeError):  # a point this spec cannot build is not its result
                same = False
            if not same:
                continue
        out.append({"cell": key, **dict(zip(("llm", "visual_tokens", "compressor", "task", "seed"), point)),
                    "text_tokens": q, **_finished(record, str(point[2]), q, size(str(point[0]), record), groups)})
    return out


def format_table(table: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(table, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        present = list(dict.fromkeys(k for r in table for k in r))
        # the results' own columns first, in their order; then whatever else the rows carry
        fields = [c for c in COLUMNS if c in present] + [k for k in present if k not in COLUMNS]
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
        return buf.getvalue()
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for col in COLUMNS:
        t.add_column(col, justify="right" if col not in ("cell", "llm", "compressor", "task", "status") else "left")
    for r in table:
        t.add_row(*[_cell(r.get(c)) for c in COLUMNS])
    q = table[0].get("text_tokens") if table else None
    t.caption = ("error: error rate in [0, 1], 1 − exact match; eval_loss: loss, mean nats per answer token "
                 "(fit either: vlmscale fit NAME --metric eval_loss); inference_flops_llm: the LLM's prefill "
                 "2·N·(Q + V), the frontier's cost; inference_flops_vlm: the whole VLM's, tower and compressor "
                 f"included{'' if q is None else f' (Q = {q:g} text tokens, spec.fit.text_tokens)'}")
    import shutil

    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200  # a pipe: no wrapping
    console = Console(record=True, width=width)
    with console.capture() as cap:
        console.print(t)
    return cap.get()


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

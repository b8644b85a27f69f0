"""Warm start: a new experiment counts another's finished cells (or a results CSV's) without
training them; imported cells outside its grid count in fits too."""

from pathlib import Path

import pytest
import yaml

from orchestrator.protocols import LedgerRecord
from orchestrator.run.driver import prepare
from orchestrator.run.trials import plan
from orchestrator.scaling.analysis import observations_from_rows
from orchestrator.spec import SpecError, parse
from orchestrator.store.layout import ExperimentDir
from orchestrator.store.warm_start import import_cells
from orchestrator.study.results import format_table, rows
from workloads.presets import llm_non_embedding_params

ROOT = Path(__file__).resolve().parents[3]


def _doc(tmp_path, name, llms, vs, imports=None):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["storage"]["path"] = str(tmp_path / "runs")
    doc["spec"]["vision"]["pretrain"] = None
    doc["spec"]["grid"]["llms"], doc["spec"]["grid"]["visual_tokens"] = llms, vs
    if imports is not None:
        doc["spec"]["imports"] = imports
    return doc


def _finish_all(exp, exp_dir):
    prepare(exp, exp_dir, yaml.safe_dump(exp.model_dump(mode="json")), echo=lambda *_: None)
    for cell in exp.cells():
        n = llm_non_embedding_params(cell.llm)
        exp_dir.record_finished(LedgerRecord.from_dict({"key": cell.key, "params": cell.params(), "config_digest": cell.digest, "settings": cell.settings,
                                           "metrics": {"step": 600, "llm_params": n, "error": 0.5 - 0.01 * cell.visual_tokens,
                                                       "eval_loss": 0.4, "inference_flops": 1e6}}, cell.key))


def test_a_finished_experiments_cells_are_imported_and_skipped(tmp_path):
    first = parse(_doc(tmp_path, "first", ["tiny-xs", "tiny-s"], [1, 4]))
    _finish_all(first, ExperimentDir.of(first.spec.storage.path, "first"))

    # the second grid overlaps the first in tiny-s x {1, 4}, and trains with more steps
    doc = _doc(tmp_path, "second", ["tiny-s", "tiny-m"], [1, 4], imports=[{"experiment": "first"}])
    doc["spec"]["training"]["steps"] = 800
    second = parse(doc)
    exp_dir = ExperimentDir.of(second.spec.storage.path, "second")
    cells = prepare(second, exp_dir, yaml.safe_dump(doc), echo=lambda *_: None)
    lines = []
    added = import_cells(second, exp_dir, echo=lines.append)
    assert len(added) == 4 and "imported 4 finished cells from experiment first" in lines[0]
    p = plan(second, cells, exp_dir, {"CPU": 2})
    assert sorted(c.llm for c in p.todo) == ["tiny-m", "tiny-m"]  # tiny-s was imported: never retrained

    table = rows(second, exp_dir)
    assert len(table) == 6  # 4 grid cells + tiny-xs x 2 imported from outside the grid
    imported = [r for r in table if r.get("imported_from")]
    assert {r["llm"] for r in imported} == {"tiny-xs", "tiny-s"} and all(r["status"] == "finished" for r in imported)
    assert len(observations_from_rows(table).e) == 4  # the fit counts every finished cell, imported ones too
    assert import_cells(second, exp_dir, echo=lines.append) == []  # idempotent


def test_a_results_csv_is_imported_like_an_experiment(tmp_path):
    first = parse(_doc(tmp_path, "first", ["tiny-xs", "tiny-s"], [1, 4]))
    first_dir = ExperimentDir.of(first.spec.storage.path, "first")
    _finish_all(first, first_dir)
    csv_path = tmp_path / "first.csv"
    csv_path.write_text(format_table(rows(first, first_dir), "csv"))

    second = parse(_doc(tmp_path, "second", ["tiny-xs"], [1, 4, 16], imports=[{"results": str(csv_path)}]))
    exp_dir = ExperimentDir.of(second.spec.storage.path, "second")
    cells = prepare(second, exp_dir, "x", echo=lambda *_: None)
    assert len(import_cells(second, exp_dir, echo=lambda *_: None)) == 4
    assert [c.visual_tokens for c in plan(second, cells, exp_dir, {"CPU": 2}).todo] == [16]
    record = exp_dir.finished_record("tiny-s-v4-avgpool-shapes-s0")
    assert record.imported_from == "results:first.csv" and record.metrics["error"] == pytest.approx(0.46)


def test_a_cell_this_experiment_trained_is_never_overwritten_by_an_import(tmp_path):
    first = parse(_doc(tmp_path, "first", ["tiny-xs"], [1, 4]))
    _finish_all(first, ExperimentDir.of(first.spec.storage.path, "first"))
    second = parse(_doc(tmp_path, "second", ["tiny-xs"], [1, 4], imports=[{"experiment": "first"}]))
    exp_dir = ExperimentDir.of(second.spec.storage.path, "second")
    _finish_all(second, exp_dir)
    mine = exp_dir.finished()
    assert import_cells(second, exp_dir, echo=lambda *_: None) == [] and exp_dir.finished() == mine


@pytest.mark.parametrize("imports,fragment", [
    ([{"experiment": "first", "results": "x.csv"}], "either experiment"),
    ([{}], "either experiment"),
    ([{"experiment": "Bad_Name"}], "not an experiment name"),
    ([{"results": "x.csv", "storage": "/tmp"}], "storage applies to an imported experiment"),
])
def test_bad_imports_are_refused_in_one_line(tmp_path, imports, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse(_doc(tmp_path, "second", ["tiny-xs"], [1], imports=imports), "exp.yaml")


def test_a_missing_import_source_is_named(tmp_path):
    exp = parse(_doc(tmp_path, "second", ["tiny-xs"], [1], imports=[{"experiment": "nowhere"}]))
    with pytest.raises(SpecError, match="no experiment 'nowhere' under"):
        import_cells(exp, ExperimentDir.of(exp.spec.storage.path, "second"))
    bad = tmp_path / "bad.csv"
    bad.write_text("llm,error\ntiny-xs,0.5\n")
    exp = parse(_doc(tmp_path, "second", ["tiny-xs"], [1], imports=[{"results": str(bad)}]))
    with pytest.raises(SpecError, match="missing column"):
        import_cells(exp, ExperimentDir.of(exp.spec.storage.path, "second"))

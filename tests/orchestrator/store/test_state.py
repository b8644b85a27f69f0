"""Every state file is checked when read: a damaged one is one line naming it and what to do (exit 2),
never a traceback or a cell silently dropped; `vlmscale repair` sets it aside or restores it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import StateError
from orchestrator.protocols import LedgerRecord
from orchestrator.run.driver import prepare
from orchestrator.run.repair import heal_ledger
from orchestrator.spec import parse
from orchestrator.store.layout import ExperimentDir
from orchestrator.study.results import rows
from orchestrator.tracking.tracker import Tracker, tracking_target

ROOT = Path(__file__).resolve().parents[3]
DOC = {
    "apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "kept"},
    "spec": {"grid": {"llms": ["tiny-xs", "tiny-s"], "visual_tokens": [1, 4, 16], "compressors": ["avgpool"],
                      "tasks": ["shapes"]},
             "vision": {"model": "vit-micro", "pretrain": None}, "training": {"steps": 30}},
}
CUT = b'{"config_digest": "ab12", "metrics": {"error": 0.4'


def _experiment(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["spec"]["storage"] = {"path": str(tmp_path / "runs")}
    text = yaml.safe_dump(doc)
    exp = parse(doc)
    exp_dir = ExperimentDir.of(exp.spec.storage.path, exp.name)
    cells = prepare(exp, exp_dir, text)
    tracker = Tracker(*tracking_target(exp, exp_dir))
    tracker.parent_run(exp.name, exp.digest(), text)
    for i, cell in enumerate(cells):
        exp_dir.record_finished(LedgerRecord.from_dict({"key": cell.key, "params": cell.params(), "config_digest": cell.digest,
                                           "settings": cell.settings,
                                           "metrics": {"error": 0.5 - 0.01 * i, "llm_params": 1e6 * (1 + i // 3),
                                                       "step": 30}}, cell.key))
    return exp, exp_dir, cells


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize("content,problem", [
    (CUT, "not JSON"), (b"", "not JSON"), (b"[1, 2]", "not a record"), (b'{"metrics": {"error": "low"}}', "error"),
    (b'{"metrics": {"error": 0.4, "llm_params": 1e6}}', "no config_digest"), (b"\xff\xfe", "not JSON"),
])
def test_a_damaged_ledger_record_is_one_line_for_every_reader(tmp_path, content, problem):
    exp, exp_dir, cells = _experiment(tmp_path)
    bad = exp_dir.result_path(cells[2].key)
    bad.write_bytes(content)
    with pytest.raises(StateError, match=problem) as e:
        rows(exp, exp_dir)
    assert str(bad) in str(e.value) and "vlmscale repair kept" in str(e.value)
    storage = str(tmp_path / "runs")
    for command in (["status", "kept"], ["results", "kept"], ["fit", "kept"]) if content == CUT else ():
        r = _cli(*command, "--storage", storage)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (command, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr, (command, r.stderr)

    # the run heals it by itself: set aside, and the cell is no longer finished (it is evaluated again)
    lines = []
    assert heal_ledger(exp_dir, lines.append) == [cells[2].key]
    assert not bad.exists() and list((exp_dir.root / "damaged").iterdir())[0].read_bytes() == content
    assert {r["cell"]: r["status"] for r in rows(exp, exp_dir)}[cells[2].key] == "pending"
    assert "evaluated again from its final checkpoint" in lines[0]


@pytest.mark.parametrize("name,content", [
    ("experiment.json", b'{"name": "kept", "spe'), ("experiment.json", b"{}"),
    ("rounds.json", b'{"rounds": [{"cells": [{"llm": "tiny-xs"}]}]}'), ("rounds.json", b"{"),
    ("rounds.json", b'{"rounds": [{"cells": []}, {"cells": [{"llm": "tiny-xs", "visual_tokens": 1, "compressor": '
                    b'"avgpool", "task": "shapes", "seed": 0, "forecast": {"value": "x"}}]}]}'),
    ("rounds.json", b'{"rounds": [{"cells": [], "fit": {"cells": 9, "forecast_check": {"round": 2}}}]}'),
    ("calibration.json", b'{"sizes": {"tiny-xs": {"lr": "high"}}}'),
])
def test_a_damaged_manifest_round_log_or_calibration_names_the_file_and_repair_mends_it(tmp_path, name, content):
    exp, exp_dir, cells = _experiment(tmp_path)
    if name == "calibration.json":  # only read by an experiment that calibrates
        doc = json.loads(exp_dir.manifest.read_text())
        doc["spec"]["spec"]["training"]["lr"] = {"low": 1e-4, "high": 1e-2, "trials": 2}
        exp_dir.manifest.write_text(json.dumps(doc))
    (exp_dir.root / name).write_bytes(content)
    storage = str(tmp_path / "runs")
    r = _cli("status", "kept", "--storage", storage)
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(exp_dir.root / name) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "damaged" in r.stderr

    r = _cli("repair", "kept", "--storage", storage)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 damaged state file(s) repaired" in r.stdout
    r = _cli("status", "kept", "--storage", storage)
    assert r.returncode == 0, r.stderr
    # (the calibrating spec trains at other rates than the records were made under: they show changed)
    assert ("6 changed" if name == "calibration.json" else "6 finished") in r.stdout, r.stdout
    assert [p.read_bytes() for p in (exp_dir.root / "damaged").iterdir()] == [content]  # kept, not deleted
    if name == "experiment.json":  # restored from the spec the parent MLflow run logged
        assert json.loads(exp_dir.manifest.read_text())["spec"]["metadata"]["name"] == "kept"


def test_progress_lines_that_are_not_reports_are_skipped_and_a_bad_error_file_is_no_error(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    exp_dir.progress.mkdir(parents=True)
    exp_dir.progress_path("a").write_bytes(b'{"step": 5}\n[1]\n"text"\n{"loss": 1}\n\xff\n{"step": 10.0}\n{"st')
    assert [r["step"] for r in exp_dir.progress_history("a")] == [5, 10.0]
    exp_dir.error_path("a").parent.mkdir(parents=True)
    for content in (b"{", b"[]", b'{"cause": 3}'):
        exp_dir.error_path("a").write_bytes(content)
        assert exp_dir.cell_error("a") is None


def test_a_rebuilt_mlflow_store_gets_every_param_of_a_finished_cell(tmp_path):
    exp, exp_dir, cells = _experiment(tmp_path)
    record = exp_dir.finished_record(cells[0].key)
    assert len(record.mlflow_params()) == len(cells[0].params()) + len(cells[0].settings) > 40
    tracker = Tracker(f"sqlite:///{tmp_path / 'rebuilt.db'}", "kept")
    run = tracker.child_run("p", "kept", cells[0].key, record.mlflow_params(), digest=record.config_digest)
    assert len(tracker.client.get_run(run).data.params) == len(record.mlflow_params())


def test_names_from_the_command_line_never_become_other_paths(tmp_path):
    for name in ("../etc", "a/b", "Kept", "x" * 64, "kept\n"):
        r = _cli("status", name, "--storage", str(tmp_path))
        assert r.returncode == 2 and "is not an experiment name" in r.stderr and "Traceback" not in r.stderr, name


def test_a_fit_of_a_partial_grid_works_and_says_so(tmp_path):
    exp, exp_dir, cells = _experiment(tmp_path)
    exp_dir.result_path(cells[-1].key).unlink()
    r = _cli("fit", "kept", "--storage", str(tmp_path / "runs"), "--format", "json", "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    assert "grid is partial — 5 of 6 cells finished (1 pending)" in r.stderr
    assert json.loads(r.stdout)["n_points"] == 5  # stdout stays the fit's JSON, of the finished cells

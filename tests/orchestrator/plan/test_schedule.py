"""Scheduling decisions that need no Ray: concurrency from resources, the ledger's guard."""

import pytest
import yaml

from orchestrator.protocols import CellStatus, LedgerRecord
from orchestrator.run.cluster import derive_concurrency
from orchestrator.run.trials import plan
from orchestrator.spec import SpecError, parse
from orchestrator.store.layout import ExperimentDir, atomic_write_json

BASE = {"apiVersion": "vlmscale.dev/v1alpha1", "kind": "ScalingExperiment", "metadata": {"name": "s"},
        "spec": {"grid": {"llms": ["tiny-xs", "tiny-s"], "visual_tokens": [1, 4], "compressors": ["avgpool"]},
                 "vision": {"model": "vit-micro"}}}


def _exp(**resources):
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["spec"]["resources"] = resources
    return parse(doc)


@pytest.mark.parametrize("resources,cluster,cells,expected", [
    ({}, {"CPU": 2}, 4, 2),
    ({"workers_per_cell": 2}, {"CPU": 2}, 4, 1),
    ({"cpus_per_worker": 0.5}, {"CPU": 2}, 4, 4),
    ({"cpus_per_worker": 0.5}, {"CPU": 2}, 3, 3),  # never more than there are cells
    ({"max_concurrent_cells": 1}, {"CPU": 8}, 4, 1),
    ({"workers_per_cell": 8, "cpus_per_worker": 8, "gpus_per_worker": 1}, {"CPU": 128, "GPU": 16}, 28, 2),
])
def test_concurrency_leaves_every_cell_its_workers(resources, cluster, cells, expected):
    assert derive_concurrency(_exp(**resources), cluster, cells) == expected


def test_a_cell_that_cannot_fit_is_a_clear_error():
    with pytest.raises(SpecError, match="one cell needs 4 CPUs and 0 GPUs .* the Ray cluster has 2 CPUs"):
        derive_concurrency(_exp(workers_per_cell=4), {"CPU": 2}, 4)
    with pytest.raises(SpecError, match="needs 1 CPUs and 1 GPUs"):
        derive_concurrency(_exp(gpus_per_worker=1), {"CPU": 8}, 4)


def test_plan_skips_finished_cells_and_refuses_a_changed_one(tmp_path):
    exp = _exp()
    exp_dir = ExperimentDir(tmp_path / "s")
    cells = exp.cells()
    done = cells[0]
    atomic_write_json(exp_dir.result_path(done.key), {"key": done.key, "config_digest": done.digest, "settings": done.settings,
                                                      "metrics": {"error": 0.5, "llm_params": 1e6}})
    p = plan(exp, cells, exp_dir, {"CPU": 2})
    assert [c.key for c in p.todo] == [c.key for c in cells[1:]] and p.concurrency == 2

    changed = yaml.safe_load(yaml.safe_dump(BASE))
    changed["spec"]["training"] = {"steps": 999}
    exp2 = parse(changed)
    with pytest.raises(SpecError, match=rf"1 finished cell\(s\) were trained under \(train.steps 600 → 999\): {done.key}"):
        plan(exp2, exp2.cells(), exp_dir, {"CPU": 2})


def test_ledger_writes_are_atomic(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    first, second = ({"config_digest": "0" * 16, "metrics": {"error": err, "llm_params": 1e6}} for err in (0.1, 0.2))
    exp_dir.record_finished(LedgerRecord.from_dict(first, "a"))
    exp_dir.record_finished(LedgerRecord.from_dict(second, "a"))
    assert exp_dir.finished() == {"a": LedgerRecord.from_dict(second, "a")}
    assert [p.name for p in exp_dir.results.iterdir()] == ["a.json"]  # no temp files left behind
    exp_dir.progress.mkdir(parents=True)
    exp_dir.progress_path("a").write_text('{"step": 5}\n{"step": 10}\n{"step": 1')  # a line cut by a kill
    assert exp_dir.last_progress("a") == {"step": 10}


def test_progress_lines_and_the_experiments_eta():
    from orchestrator.run.progress import ProgressBoard, plain_line

    board = ProgressBoard()
    board.add("a", steps=100, batch_size=10, record=LedgerRecord("a", {"step": 100, "error": 0.4, "llm_params": 1e6}))
    board.add("b", steps=100, batch_size=10)
    board.add("c", steps=100, batch_size=10)
    board.update("b", "running", {"step": 40, "loss": 0.51234, "samples_per_s": 20.0})
    line = plain_line(board.cells["b"], board)
    assert line.startswith("[vlmscale] b: running step 40/100 · loss 0.5123 · 20.0 samples/s · ETA 30 s")
    # what is left: 60 steps of b and 100 of c, x 10 samples, at 20 samples/s
    assert board.eta_s() == (60 + 100) * 10 / 20.0 and "1/3 cells done" in line and "about 1 min 20 s left" in line
    assert "error 0.4000" in plain_line(board.cells["a"], board)
    # b finishes and c starts: before c's first report the estimate holds at the last cell rate
    board.update("b", "finished", {"step": 100, "error": 0.3})
    board.update("c", "running", {"step": 0})
    assert board.eta_s() == 100 * 10 / 20.0 and "about 50 s left" in plain_line(board.cells["c"], board)
    # two cells running, one reported: the other counts at the same rate
    board.add("d", steps=100, batch_size=10)
    board.update("d", CellStatus.RUNNING)
    board.update("c", result={"step": 50, "samples_per_s": 10.0})
    assert board.eta_s() == (50 + 100) * 10 / (2 * 10.0)

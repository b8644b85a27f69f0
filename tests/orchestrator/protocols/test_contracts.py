"""The typed contracts where packages meet: each survives its serialised form unchanged, a stored
ledger record is checked and versioned, and a trial's report reads back as what it said."""

from __future__ import annotations

import json

import pytest

from orchestrator.protocols import LEDGER_VERSION, CellJob, CellStatus, LedgerRecord, TrialReport, WorkerSlots
from orchestrator.protocols.status import MARKERS

RECORD = LedgerRecord("tiny-s-v4-avgpool-shapes-s0", {"error": 0.45, "llm_params": 74304.0, "step": 600},
                      params={"llm": "tiny-s", "visual_tokens": 4}, settings={"train.lr": 2e-4},
                      config_digest="0123456789abcdef", checkpoint="/runs/c/checkpoint_000600", finished_at=1.5)


def test_a_ledger_record_survives_its_json_and_says_its_version():
    doc = json.loads(json.dumps(RECORD.to_dict()))
    assert doc["version"] == LEDGER_VERSION
    assert LedgerRecord.from_dict(doc) == RECORD
    imported = LedgerRecord("k", {"error": 0.4, "llm_params": 1e6}, imported_from="results:a.csv")
    assert "config_digest" not in imported.to_dict() and LedgerRecord.from_dict(imported.to_dict()) == imported


def test_a_record_written_before_versions_reads_as_version_1_and_a_newer_one_is_refused():
    old = {k: v for k, v in RECORD.to_dict().items() if k != "version"}
    assert LedgerRecord.from_dict(old) == RECORD
    with pytest.raises(ValueError, match="version 2 is newer than this vlmscale reads"):
        LedgerRecord.from_dict({**old, "version": 2})
    for bad, why in (({**old, "metrics": {"error": "x", "llm_params": 1}}, "metrics.error is not a number"),
                     ({k: v for k, v in old.items() if k != "config_digest"}, "no config_digest"),
                     ({**old, "settings": []}, "settings is not an object")):
        with pytest.raises(ValueError, match=why):
            LedgerRecord.from_dict(bad)


def test_a_record_counts_only_under_its_own_settings_or_as_an_import():
    assert RECORD.counts_for("0123456789abcdef") and not RECORD.counts_for("ffffffffffffffff")
    assert RECORD.imported("experiment:a").counts_for("anything")
    assert RECORD.imported("experiment:a").imported("experiment:b").imported_from == "experiment:a"
    assert RECORD.mlflow_params() == {"llm": "tiny-s", "visual_tokens": 4, "train.lr": 2e-4} and RECORD.step == 600


def test_a_cell_job_crosses_tune_as_plain_data_and_comes_back_whole():
    job = CellJob("k", {"llm": "tiny-s"}, {"model": {"llm": "tiny-s"}}, "0123456789abcdef", {"train.lr": 1e-3},
                  "/runs/quickstart", WorkerSlots(2, 1.0, 0.0), 2, False)
    doc = json.loads(json.dumps(job.to_dict()))  # what Tune keeps as the trial's config
    assert CellJob.from_dict(doc) == job and CellJob.of_trial({"cell": doc}) == job


@pytest.mark.parametrize("report", [TrialReport.finished(RECORD), TrialReport.skipped(RECORD),
                                    TrialReport.interrupted(), TrialReport.error("OOM at step 3", "/runs/c.log")],
                         ids=lambda r: r.status.value)
def test_each_trial_report_reads_back_as_it_was_said(report):
    result = json.loads(json.dumps(report.to_result()))
    assert TrialReport.from_result(result) == report
    assert set(result) - set(RECORD.metrics) <= set(MARKERS)  # the MLflow callback knows every key to leave out


def test_training_progress_is_no_report_and_a_skipped_cell_shows_its_numbers():
    assert TrialReport.from_result({"step": 50, "loss": 0.5}) is None and TrialReport.from_result(None) is None
    assert TrialReport.skipped(RECORD).to_result()["error"] == 0.45
    assert "error" not in TrialReport.finished(RECORD).to_result()  # its numbers came with its training reports


def test_statuses_read_as_their_values():
    assert f"{CellStatus.RUNNING}" == "running" and CellStatus("finished") is CellStatus.FINISHED
    assert json.dumps({"status": CellStatus.ERRORED}) == '{"status": "errored"}'
    assert {s for s in CellStatus if s.done} == {CellStatus.FINISHED, CellStatus.SKIPPED}
    assert not CellStatus.RUNNING.settled and CellStatus.INTERRUPTED.settled

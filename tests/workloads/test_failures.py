"""Why a cell failed and whether to try again: failures that recur end the cell at once with
their cause; faults that may pass are retried from the last checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.store.layout import ExperimentDir
from workloads.drill import InjectedFault
from workloads.failures import cause_line, describe, is_transient

ROOT = Path(__file__).resolve().parents[2]


def _worker_group(failures):
    from ray.train.v2.api.exceptions import WorkerGroupError

    return WorkerGroupError("workers failed", failures)


def test_failures_that_recur_are_not_transient():
    import torch

    for e in (ValueError("bad config"), FileNotFoundError(2, "No such file", "/m/config.json"), KeyError("x"),
              torch.OutOfMemoryError("CUDA out of memory"), RuntimeError("size mismatch for weight")):
        assert not is_transient(e), e
    for e in (InjectedFault("drill"), ConnectionError("reset by peer"), TimeoutError("collective")):
        assert is_transient(e), e
    assert cause_line(FileNotFoundError(2, "No such file", "/m/config.json")).startswith("FileNotFoundError: ")


def test_a_rank_that_raised_is_the_cause_of_its_peers_timeouts():
    import torch.distributed as dist

    mixed = _worker_group({1: dist.DistBackendError("NCCL timeout waiting for rank 0"), 0: ValueError("shape [3, 4]")})
    assert not is_transient(mixed) and cause_line(mixed) == "ValueError: shape [3, 4]"
    lost = _worker_group({0: InjectedFault("drill"), 1: InjectedFault("drill")})
    assert is_transient(lost)
    failure = describe(mixed)
    assert "ValueError: shape [3, 4]" in failure.details and "DistBackendError" in failure.details


def test_a_cause_keeps_the_line_that_says_why_and_what_it_was_raised_from():
    """A library's heading on its first line and the reason below it; an error raised from another."""
    try:
        try:
            raise TypeError("Field 'hidden_size' expected int, got str")
        except TypeError as inner:
            raise ValueError("Validation error for field 'hidden_size':\n    the value is wrong") from inner
    except ValueError as e:
        line = cause_line(e)
    assert line == ("ValueError: Validation error for field 'hidden_size': | the value is wrong "
                    "(from TypeError: Field 'hidden_size' expected int, got str)")
    assert len(cause_line(ValueError("x" * 2000))) == 500  # one line, bounded


def test_a_data_error_carries_its_file_through_pickling():
    import pickle

    from workloads.benchmark_files import BenchmarkFormatError
    from workloads.failures import data_file

    e = pickle.loads(pickle.dumps(BenchmarkFormatError("q.jsonl: line 3: answer: missing", "/data/q.jsonl")))
    assert str(e) == "q.jsonl: line 3: answer: missing" and data_file(_worker_group({0: e})) == "/data/q.jsonl"
    assert data_file(ValueError("not data")) is None


def test_a_failure_is_kept_in_the_cells_log_and_shown_by_status(tmp_path):
    exp_dir = ExperimentDir(tmp_path / "x")
    try:
        raise FileNotFoundError(2, "No such file or directory", "/models/llm/config.json")
    except FileNotFoundError as e:
        f = describe(e)
    exp_dir.record_error("cell-a", f.cause, f.transient, f.details)
    kept = exp_dir.cell_error("cell-a")
    assert kept["cause"].startswith("FileNotFoundError: [Errno 2] No such file") and not kept["transient"]
    log = exp_dir.log_path("cell-a").read_text()
    assert "will recur: not retried" in log and "Traceback" in log
    exp_dir.clear_error("cell-a")
    assert exp_dir.cell_error("cell-a") is None


def _broken_llm(directory: Path) -> Path:
    """A model directory that passes validate (config, weights, tokenizer) and cannot be loaded:
    its config says one width, its weights another — it will fail the same way every time."""
    from tests.support.artifacts import tiny_llm

    tiny_llm(directory, 32, 1)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    return directory


@pytest.mark.slow
def test_a_failure_that_recurs_is_not_retried_and_its_cause_is_shown(tmp_path):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    broken = _broken_llm(tmp_path / "broken-llm")
    doc["metadata"]["name"] = "failfast"
    doc["spec"]["grid"] = {"points": [{"llm": "tiny-xs", "visual_tokens": 1}, {"llm": str(broken), "visual_tokens": 1}],
                           "compressors": ["avgpool"], "tasks": ["shapes"]}
    doc["spec"]["training"].update(steps=20, log_every=10, checkpoint_every=10)
    doc["spec"]["vision"]["pretrain"] = {"steps": 5}
    doc["spec"]["data"]["eval_size"] = 32
    doc["spec"]["storage"]["path"] = str(tmp_path / "runs")
    doc["spec"]["fit"]["enabled"] = False
    doc["spec"]["failure"] = {"retries_per_cell": 2}
    spec = tmp_path / "failfast.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(spec), "--plain"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    exp_dir = ExperimentDir(tmp_path / "runs" / "failfast")
    key = next(k for k in (exp_dir.results.parent / "errors").iterdir()).stem
    log = exp_dir.log_path(key).read_text()
    assert log.count("=== ") == 1, log  # tried once: it would fail the same way again
    cause = exp_dir.cell_error(key)["cause"]
    assert f"{key}: {cause}" in r.stdout and f"log: {exp_dir.log_path(key)}" in r.stdout
    assert f"{key}: errored" in r.stdout  # the --plain status line names the cause too
    assert "Traceback" not in r.stderr and "Traceback" in log
    assert len(exp_dir.finished()) == 1  # the other cell trained
    st = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", str(spec), "--format", "json"],
                        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    row = next(c for c in json.loads(st.stdout)["cells"] if c["cell"] == key)
    assert row["status"] == "errored" and row["cause"] == cause

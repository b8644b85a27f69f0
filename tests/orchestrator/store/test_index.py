"""The index of a user's experiments (orchestrator/store/index.py): a bare name resolves from any folder,
two experiments of one name are an error listing both, a damaged index is one line, concurrent
runs are all recorded, completion offers the names."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys

import pytest

from orchestrator.errors import StorageError
from orchestrator.store import index
from tests.support.experiments import ROOT, _cli, _finished_experiment


def _study(folder):
    folder.mkdir(parents=True)
    return _finished_experiment(folder)


def test_a_bare_name_resolves_from_any_folder(tmp_path):
    spec = _study(tmp_path / "study")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    miss = _cli("status", "quickstart", cwd=elsewhere)
    assert miss.returncode == 2 and "no experiment 'quickstart'" in miss.stderr and "Traceback" not in miss.stderr
    index.record("quickstart", str(spec.parent / "state"))
    for command in ("status", "results", "fit"):
        r = _cli(command, "quickstart", *(["--bootstrap", "20"] if command == "fit" else []), cwd=elsewhere)
        assert r.returncode == 0, (command, r.stderr)
    assert "9 cells — 9 finished" in _cli("status", "quickstart", cwd=elsewhere).stdout
    # --storage and $VLMSCALE_STORAGE come first: an empty folder there is "no experiment", not the index's
    r = _cli("status", "quickstart", "--storage", str(elsewhere), cwd=elsewhere)
    assert r.returncode == 2 and str(elsewhere) in r.stderr
    r = _cli("status", "quickstart", cwd=elsewhere, env={"VLMSCALE_STORAGE": str(elsewhere)})
    assert r.returncode == 2


def test_two_experiments_of_one_name_are_an_error_listing_both(tmp_path):
    spec = _study(tmp_path / "a")
    shutil.copytree(spec.parent / "state", tmp_path / "b" / "state")
    index.record("quickstart", str(tmp_path / "a" / "state"))
    index.record("quickstart", str(tmp_path / "b" / "state"))
    index.record("quickstart", str(tmp_path / "a" / "state"))  # again: still one entry for that place
    assert len(json.loads(index.index_path().read_text())["experiments"]) == 2
    with pytest.raises(StorageError, match="two experiments are named 'quickstart'") as e:
        index.resolve("quickstart")
    assert str(tmp_path / "a" / "state") in str(e.value) and str(tmp_path / "b" / "state") in str(e.value)
    r = _cli("status", "quickstart", cwd=tmp_path)
    assert r.returncode == 2 and "--storage" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # the spec file, or --storage, chooses
    assert _cli("status", "quickstart", "--storage", str(tmp_path / "b" / "state"), cwd=tmp_path).returncode == 0
    # an entry whose storage no longer holds the experiment is passed over
    shutil.rmtree(tmp_path / "b" / "state")
    assert index.resolve("quickstart") == str((tmp_path / "a" / "state").resolve())


def test_a_damaged_index_is_one_line_naming_it(tmp_path):
    _finished_experiment(tmp_path)
    path = index.index_path()
    path.parent.mkdir(parents=True)
    for damage in ("{not json", json.dumps({"experiments": [{"name": "Bad Name", "storage": "/x"}]}),
                   json.dumps([1, 2])):
        path.write_text(damage)
        r = _cli("status", "quickstart", cwd=tmp_path)
        assert r.returncode == 2 and str(path) in r.stderr and "move it aside" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    path.unlink()
    index.record("quickstart", str(tmp_path / "state"))  # and a run rebuilds it
    assert index.names() == ["quickstart"]


def _record_many(args):
    state, k = args
    os.environ["XDG_STATE_HOME"] = state
    for i in range(20):
        index.record(f"exp-{k}-{i}", f"/tmp/storage-{k}")


def test_concurrent_runs_are_all_recorded(tmp_path):
    state = os.environ["XDG_STATE_HOME"]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_record_many, [(state, k) for k in range(4)])
    assert len(index.names()) == 80


def test_completion_offers_the_indexed_names(tmp_path):
    _study(tmp_path / "study")
    index.record("quickstart", str(tmp_path / "study" / "state"))
    env = {**os.environ, "COMP_WORDS": "vlmscale status q", "COMP_CWORD": "2", "_VLMSCALE_COMPLETE": "bash_complete",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli"], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    offered = [line.split(",", 1)[1] for line in out.stdout.splitlines()]
    assert offered == ["quickstart"], out.stdout + out.stderr

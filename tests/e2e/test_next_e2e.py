"""The loop a researcher walks, end to end on real local Ray: run a quickstart-shaped spec as
`make demo` does, then run exactly the `next:` command it printed, from another folder. Only the
proposed cells train, into the same experiment — one ledger, one MLflow store, one parent run —
and the experiment's bare name resolves from the repository root."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.runs import ROOT, _env, no_ray_left  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def _demo_like(folder: Path) -> Path:
    """examples/quickstart.yaml, shorter: relative storage beside the spec, candidates beyond the grid."""
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    s = doc["spec"]
    s["grid"]["llms"] = ["tiny-xs", "tiny-s"]
    s["vision"]["pretrain"] = {"steps": 30}
    s["data"]["eval_size"] = 128
    s["training"].update(steps=60, checkpoint_every=30, log_every=30)
    s["fit"].update(bootstrap=100, propose=2)
    s["fit"]["candidates"] = {"llms": ["tiny-xs", "tiny-s", "tiny-m"]}
    assert s["storage"]["path"] == "./vlmscale-runs"  # as the demo's: it resolves beside the spec
    folder.mkdir(parents=True)
    spec = folder / "quickstart.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spec


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900, env={**_env(), "PYTHONPATH": str(ROOT)})


def test_the_printed_next_command_trains_only_the_proposed_cells(tmp_path, no_ray_left):
    spec = _demo_like(tmp_path / "examples")
    first = _cli("run", str(spec), "--plain", cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "6 cells, 0 already finished, 6 to run" in first.stdout
    assert "conclusion:" in first.stdout and "V* = " in first.stdout
    command = re.search(r"^next:\s+vlmscale (run \S+)$", first.stdout, re.M).group(1).split()
    state = tmp_path / "examples" / "vlmscale-runs" / "quickstart"
    before = {p.name: json.loads(p.read_text())["finished_at"] for p in (state / "results").glob("*.json")}
    assert len(before) == 6

    elsewhere = tmp_path / "home"  # the researcher is somewhere else now: the file must not care
    elsewhere.mkdir()
    second = _cli(*command, "--plain", cwd=elsewhere)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "round 2: 8 cells, 6 already finished, 2 to run" in second.stdout, second.stdout[:2000]

    # the same ledger: the six finished cells untouched, the two picks added — both tiny-m, the LLM
    # beyond the grid, since tiny-xs and tiny-s have every V the tower's 4x4 patch blocks give
    after = {p.name: json.loads(p.read_text())["finished_at"] for p in (state / "results").glob("*.json")}
    assert {k: after[k] for k in before} == before and len(after) == 8
    new = sorted(set(after) - set(before))
    assert all(k.startswith("tiny-m-") for k in new), new
    # one MLflow store, one parent, one run per cell (the new ones tagged round 2), no second database
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("mlflow.db")) == \
        [Path("examples/vlmscale-runs/quickstart/mlflow.db")]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vlmscale.role") == "parent"]
    cells = [r for r in runs if r.data.tags.get("vlmscale.role") == "cell"]
    assert len(parents) == 1 and len(cells) == 8
    assert {r.info.run_name for r in cells if r.data.tags.get("vlmscale.round") == "2"} == \
        {k.removesuffix(".json") for k in new}
    fits = sorted(r.data.tags["vlmscale.round"] for r in runs if r.data.tags.get("vlmscale.role") == "fit")
    assert fits == ["1", "2"]  # each round's fit run, under the same parent

    # names resolve: from the repository root (no --storage) the index finds it
    status = _cli("status", "quickstart", "--format", "json", cwd=ROOT)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["counts"] == {"finished": 8} and doc["state"] == str(state)
    rounds = {c["cell"]: c["round"] for c in doc["cells"]}
    assert sorted(k for k, r in rounds.items() if r == 2) == [k.removesuffix(".json") for k in new]

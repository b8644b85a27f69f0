"""One storage root: relative paths resolve against the spec's folder; --storage and
VLMSCALE_STORAGE everywhere; a command that finds no experiment says so (exit 2)."""

import json

import yaml

from orchestrator.spec import load
from tests.support.experiments import ROOT, _cli, _finished_experiment


def test_relative_storage_resolves_against_the_spec_folder_from_any_directory(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    spec = _finished_experiment(project)
    assert (spec.parent / "state" / "quickstart" / "experiment.json").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = _cli("status", str(spec), cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert "9 cells — 9 finished" in status.stdout
    fit = _cli("fit", str(spec), "--bootstrap", "20", "--format", "json", cwd="/")
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["n_points"] == 9


def test_storage_flag_and_environment_variable_find_an_experiment_by_name(tmp_path):
    spec = _finished_experiment(tmp_path)
    storage = str(spec.parent / "state")
    assert _cli("status", "quickstart", "--storage", storage, cwd="/").returncode == 0
    by_env = _cli("results", "quickstart", "--format", "json", cwd="/", env={"VLMSCALE_STORAGE": storage})
    assert by_env.returncode == 0 and len(json.loads(by_env.stdout)) == 9


def test_no_experiment_is_an_error_not_an_empty_table(tmp_path):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec = tmp_path / "never-run.yaml"
    spec.write_text(yaml.safe_dump(doc))
    for command in (["status", str(spec)], ["fit", str(spec)], ["results", "quickstart"]):
        r = _cli(*command, cwd=tmp_path)
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and ("has not run under" in r.stderr or "no experiment" in r.stderr)


def test_fit_propose_and_report_are_one_analysis(tmp_path):
    """The same candidates and the spec's bootstrap settings everywhere: one frontier; whatever lies
    beyond the trained cells is marked."""
    spec = _finished_experiment(tmp_path)
    fit = _cli("fit", str(spec), "--format", "json", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    fitted = json.loads(fit.stdout)
    assert fitted["bootstrap"] == load(spec).spec.fit.bootstrap  # the spec's 200, not a CLI default
    report = _cli("report", str(spec), "-o", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    reported = json.loads((tmp_path / "report" / "fit.json").read_text())
    assert reported["frontier"] == fitted["frontier"] and reported["params"] == fitted["params"]
    propose = _cli("propose", str(spec), "-o", str(tmp_path / "next.yaml"), cwd=tmp_path)
    text = _cli("fit", str(spec), cwd=tmp_path).stdout
    frontier_lines = [line for line in text.splitlines() if line.startswith("  ") and "e+" in line]
    assert frontier_lines and all(line in propose.stdout for line in frontier_lines)
    # the presets the grid did not train extend the frontier: marked as extrapolation / untrained
    points = fitted["frontier"]["points"]
    assert any(p["extrapolated"] for p in points) and "* extrapolated" in text
    assert any(p["runnable"] and p["runnable"]["trained"] is False for p in points) and " untrained" in text

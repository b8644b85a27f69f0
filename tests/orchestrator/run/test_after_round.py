"""The final job of `vlmscale run`: fit, frontier, proposals, report and next.yaml, logged as the
experiment's own MLflow run. Driven on a ledger that holds the quickstart's measured results."""

from pathlib import Path

import yaml

from orchestrator.protocols import LedgerRecord
from orchestrator.run.after_round import finalize
from orchestrator.run.driver import prepare
from orchestrator.spec import load, parse
from orchestrator.store.layout import ExperimentDir
from orchestrator.tracking.tracker import Tracker, tracking_target
from workloads.presets import llm_non_embedding_params

ROOT = Path(__file__).resolve().parents[3]
# error of each quickstart cell as measured by `make demo` at eval_size 512 before the reason task (fixture data)
MEASURED = {("tiny-xs", 1): 0.5566, ("tiny-xs", 4): 0.5039, ("tiny-xs", 16): 0.4551,
            ("tiny-s", 1): 0.5078, ("tiny-s", 4): 0.4727, ("tiny-s", 16): 0.4199,
            ("tiny-m", 1): 0.4961, ("tiny-m", 4): 0.4375, ("tiny-m", 16): 0.4062}


def _finished_quickstart(tmp_path, eval_loss, pretrain: bool = True):
    """The quickstart with every cell finished at the measured errors (``eval_loss`` of each error)."""
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["spec"]["storage"]["path"] = str(tmp_path / "runs")
    if not pretrain:
        doc["spec"]["vision"]["pretrain"] = None
    text = yaml.safe_dump(doc, sort_keys=False)
    exp = parse(doc)
    exp_dir = ExperimentDir.of(exp.spec.storage.path, exp.name)
    prepare(exp, exp_dir, text)
    for cell in exp.cells():
        n = llm_non_embedding_params(cell.llm)
        err = MEASURED[(cell.llm, cell.visual_tokens)]
        metrics = {"step": 600, "llm_params": n, "error": err, "eval_loss": eval_loss(err),
                   "inference_flops": 2.0 * n * (cell.visual_tokens + 12)}
        exp_dir.record_finished(LedgerRecord(cell.key, metrics, params=cell.params(), settings=cell.settings,
                                             config_digest=cell.digest))
    return exp, exp_dir, text


def test_final_job_logs_the_fit_run_with_report_and_next_yaml(tmp_path):
    exp, exp_dir, text = _finished_quickstart(tmp_path, lambda err: 0.4, pretrain=False)
    tracker = Tracker(*tracking_target(exp, exp_dir))
    parent = tracker.parent_run(exp.name, exp.digest(), text)
    lines: list[str] = []
    finalize(exp, exp_dir, text, tracker, parent, echo=lines.append)

    out = "\n".join(lines)
    assert "law (multiplicative" in out and "90% CI" in out and "optimal visual tokens V*" in out
    assert "next 3 runs" in out  # the quickstart's fit.propose
    for name in ("index.html", "fit.json", "error_vs_tokens.png", "error_vs_tokens.svg", "error_vs_flops.png",
                 "frontier.png", "next.yaml"):
        assert (exp_dir.fit / name).is_file(), name

    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`vlmscale.role` = 'fit'")
    assert len(runs) == 1
    fit_run = runs[0]
    assert fit_run.data.tags["mlflow.parentRunId"] == parent and fit_run.info.status == "FINISHED"
    assert fit_run.data.metrics["loo_rel_error"] < 0.10  # the quickstart's documented bar
    for key in ("a", "alpha", "beta", "d", "alpha_ci_low", "alpha_ci_high", "objective", "rmse", "r2"):
        assert key in fit_run.data.metrics
    artifacts = {a.path for a in tracker.client.list_artifacts(fit_run.info.run_id)}
    assert "next.yaml" in artifacts and "report" in artifacts
    report = {a.path for a in tracker.client.list_artifacts(fit_run.info.run_id, "report")}
    assert "report/index.html" in report and "report/frontier.svg" in report

    # next.yaml is a ready-to-run extension of the same experiment
    nxt = load(exp_dir.fit / "next.yaml")
    keys = [c.key for c in nxt.cells()]
    assert nxt.name == exp.name and keys[:9] == [c.key for c in exp.cells()] and len(keys) == 12
    assert nxt.spec.grid.rounds() == [1] * 9 + [2] * 3  # the picks are round 2 of the same study
    # the default candidates: the named LLMs x the V of whole patch blocks (1, 4, 16 on the 4x4 tower),
    # so the picks are the LLM beyond the grid — never V = 9, which straddles the scene's cells
    assert {c.llm for c in nxt.cells()[9:]} == {"tiny-l"} and {c.visual_tokens for c in nxt.cells()} == {1, 4, 16}
    # same experiment wherever the file is: its storage written absolute, the same cells' settings
    assert nxt.storage_root() == str((tmp_path / "runs").resolve())
    assert [c.digest for c in nxt.cells()[:9]] == [c.digest for c in exp.cells()]

    # running the final job again updates the same fit run, without a duplicate point
    finalize(exp, exp_dir, text, tracker, parent, echo=lines.append)
    assert len(tracker.client.search_runs([tracker.experiment_id], filter_string="tags.`vlmscale.role` = 'fit'")) == 1
    assert len(tracker.client.get_metric_history(fit_run.info.run_id, "alpha")) == 1
    params = tracker.client.get_run(fit_run.info.run_id).data.params
    assert params["form"] == "multiplicative" and params["bootstrap"] == str(exp.spec.fit.bootstrap)


def test_fit_eval_loss_of_a_finished_experiment_in_nats(tmp_path):
    """`vlmscale fit NAME --metric eval_loss`: the cells' raw eval loss, no rescaling."""
    import json
    import subprocess
    import sys

    exp, exp_dir, text = _finished_quickstart(tmp_path, lambda err: 3 * err + 0.2)
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", exp.name, "--storage", str(tmp_path / "runs"),
                        "--metric", "eval_loss", "--format", "json", "--bootstrap", "100"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "eval_loss" and out["metric_kind"] == "loss" and out["n_points"] == 9
    assert out["params"]["d"] < 3 * min(MEASURED.values()) + 0.2 and out["r2"] > 0.5
    table = subprocess.run([sys.executable, "-m", "orchestrator.cli", "results", exp.name, "--storage",
                            str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    assert "eval_loss: loss, mean nats per answer token" in table


def test_cells_wait_as_scheduled_until_their_trial_starts(tmp_path, monkeypatch):
    """MLflow shows a cell RUNNING only once it trains: before Tune starts, every cell to run is SCHEDULED."""
    import orchestrator.run.driver as driver

    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["spec"]["storage"]["path"] = str(tmp_path / "runs")
    doc["spec"]["vision"]["pretrain"] = None
    text = yaml.safe_dump(doc)
    exp = parse(doc)
    exp_dir = ExperimentDir.of(exp.spec.storage.path, exp.name)
    cells = prepare(exp, exp_dir, text)
    tracker = Tracker(*tracking_target(exp, exp_dir))
    parent = tracker.parent_run(exp.name, exp.digest(), text)
    seen = {}

    def fake_grid(exp, exp_dir, p, callbacks, stopper=None, search=None):
        seen.update({c.key: tracker.client.get_run(run_ids[c.key]).info.status for c in p.todo})
        return {}

    monkeypatch.setattr(driver, "run_grid", fake_grid)
    import orchestrator.run.progress as progress

    monkeypatch.setattr(progress, "progress_callback", lambda *a: None)
    import orchestrator.tracking.cell_runs as cell_runs

    monkeypatch.setattr(cell_runs, "mlflow_callback", lambda *a: None)
    run_ids: dict[str, str] = {}
    from orchestrator.run.interrupts import Interrupt

    ctx = driver.RunContext(exp, exp_dir, text, driver.RunOptions(live=False, echo=lambda *_: None),
                            Interrupt(exp_dir, 1.0), ("uri", "x", None), tracker, parent, run_ids, {"CPU": 2})
    driver._train_round(ctx, cells, 1)
    assert len(seen) == 9 and set(seen.values()) == {"SCHEDULED"}

"""The job after each round: fit the law, draw the frontier, pick the next cells with the law's
forecast for each, check the forecasts made for this round's cells; write the report and next.yaml
under ``<experiment>/fit`` and log them as the round's "fit" MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec import Experiment
from ..store.layout import ExperimentDir, atomic_write_text


def analyse(exp: Experiment, exp_dir: ExperimentDir):
    """The round's analysis under the spec's fit settings (None, with the reason, when the data
    cannot be fitted yet): the one analysis the run's summary, ``fit``, ``propose`` and ``report`` share."""
    from ..plan.price import budget_flops
    from ..scaling.analysis import analyze, observations_from_rows
    from ..scaling.design import ProposalRequest
    from ..scaling.fit import FitSettings
    from ..scaling.forms import FitError
    from ..spec.sizes import COUNTINGS
    from ..study.proposals import experiment_candidates
    from ..study.results import fit_rows, rows
    from .profiling import cost_models

    f = exp.spec.fit
    table = rows(exp, exp_dir)
    obs = observations_from_rows(fit_rows(exp, table), f.metric, f.metric_kind, COUNTINGS[f.parameters].label)
    candidates = experiment_candidates(exp, obs, table)  # never proposes a cell twice
    _, measured = cost_models(exp, exp_dir, "flops", f.text_tokens, compare_all=True)  # drawn beside, if profiled
    from ..study.laws import choose

    choice = choose(None, exp)
    try:
        settings = FitSettings(loss=f.loss, bootstrap=f.bootstrap, ci_level=f.ci_level, cross_validate=f.cross_validate)
        proposals = ProposalRequest(candidates, exp.spec.rounds.cells_per_round or f.propose, budget_flops(None, exp))
        return table, analyze(obs, choice.law, settings, f.text_tokens, proposals, compare=measured, at=choice.at), None
    except FitError as e:
        return table, None, str(e)


@dataclass(frozen=True)
class AfterRound:
    """What a round's fit found: the analysis, the check of the forecasts made for the round's cells
    (None for the grid's round), and the next round's cells with their forecasts (as first proposed,
    when a restarted run fits a round again)."""

    analysis: Any
    check: Any
    points: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """The round's entry in rounds.json and the report's round table."""
        from ..plan.rounds import fit_summary

        return fit_summary(self.analysis, len(self.analysis.observations.e), self.check)


def finalize(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, tracker, parent: str, echo=print,
             round_no: int = 1, history: list[dict[str, Any]] | None = None) -> AfterRound | None:
    """Fit, forecast check, report, next.yaml and the fit run of round ``round_no`` (None when the
    data cannot be fitted yet)."""
    from ..plan.rounds import RoundLog, forecast_check, proposed_points
    from ..scaling.analysis import format_analysis

    table, analysis, why = analyse(exp, exp_dir)
    if analysis is None:
        echo(f"fit skipped: {why}")
        return None
    log = RoundLog(list(history or []))
    check = forecast_check(log, round_no, table, exp.spec.fit.metric)
    # a refit after a restart keeps the next round it proposed before (and the forecasts made then)
    ahead = log.rounds[round_no]["cells"] if len(log.rounds) > round_no else []
    done = AfterRound(analysis, check, ahead or proposed_points(exp, analysis))
    so_far = [r for r in history or [] if r["round"] < round_no]
    so_far.append({"round": round_no, "fit": done.summary()})
    run_id = tracker.fit_run(parent, exp.name, round_no)
    tracker.mark_running(run_id)
    written, next_yaml = _write(exp, exp_dir, spec_text, table, analysis, so_far,
                                on_figure=lambda name, fig: tracker.log_figure(run_id, fig,
                                                                                     f"figures/{name}.png"),
                                about=_about(exp, exp_dir, tracker, run_id, round_no))
    echo("\n" + format_analysis(analysis) + (f"\n  {check.sentence()}." if check is not None else ""))
    echo(f"report: {exp_dir.fit / 'index.html'}"
         + (f" (a copy: {exp_dir.fit_staging / 'index.html'})" if exp_dir.remote else "")
         + (f"\nnext:   vlmscale run {next_yaml}" if analysis.picks else
            "\nnext:   nothing proposed — every candidate cell is trained; name more in spec.fit.candidates"))
    _log(tracker, run_id, parent, exp, done, round_no, written, next_yaml)
    return done


def _about(exp: Experiment, exp_dir: ExperimentDir, tracker, run_id: str, round_no: int) -> dict[str, str]:
    """The report's headline facts: which spec, when, and where its MLflow run is."""
    import time

    from ..tracking.view import run_link

    local = not tracker.uri.startswith(("http://", "https://"))
    return {"experiment": f"{exp.name}, round {round_no} (spec digest {exp.digest()}, state in {exp_dir.root})",
            "spec folder": str(exp.source_dir) if exp.source_dir else "-",
            "written": time.strftime("%Y-%m-%d %H:%M %Z"),
            f"MLflow fit run{f' (with `vlmscale ui {exp.name}` running)' if local else ''}":
                run_link(tracker.uri, tracker.experiment_id, run_id)}


def _write(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, table, analysis, rounds,
           on_figure, about: dict[str, str]) -> tuple[list[Path], Path]:
    """The report and next.yaml, written locally and kept in the experiment's storage."""
    from ..plan.calibration import chosen_lrs
    from ..scaling.report import write_report
    from ..spec.load import read_yaml
    from ..study.proposals import next_spec

    out = exp_dir.fit_staging
    written = write_report(analysis, out, title=f"{exp.name}: scaling law", rounds=rounds,
                           learning_rates=chosen_lrs(exp_dir), on_figure=on_figure, about=about)
    next_yaml = out / "next.yaml"
    atomic_write_text(next_yaml, next_spec(exp, read_yaml(spec_text, "the spec"), table, list(analysis.picks),
                                           str(exp_dir.root.parent)))
    for path in [*written, next_yaml]:
        exp_dir.publish(path, exp_dir.fit / str(path.relative_to(out)))
    return written, next_yaml


def _log(tracker, run_id: str, parent_id: str, exp: Experiment, done: AfterRound, round_no: int,
         written: list[Path], next_yaml: Path) -> None:
    """The fit run: the law's parameters with intervals, its errors, the check of this round's
    forecasts, the settings, the files, and the forecasts for the next round's cells."""
    analysis, check = done.analysis, done.check
    f, fit = exp.spec.fit, analysis.fit
    metrics = {**fit.params, "objective": fit.objective, "rmse": fit.rmse, "r2": fit.r2, "n_points": fit.n_points}
    metrics.update({f"{k}_ci_low": v[0] for k, v in fit.ci.items()})
    metrics.update({f"{k}_ci_high": v[1] for k, v in fit.ci.items()})
    for name in ("loo_rel_error", "loo_max_rel_error", "holdout_largest_rel_error"):
        if getattr(fit, name) is not None:
            metrics[name] = getattr(fit, name)
    if analysis.frontier.optimal_visual_tokens is not None:
        metrics["optimal_visual_tokens"] = analysis.frontier.optimal_visual_tokens
    if check is not None:
        metrics.update({"forecast_median_rel_error": check.median_rel_error, "forecast_inside": check.inside,
                        "forecast_cells": check.cells})
    tracker.log_metrics(run_id, metrics, step=fit.n_points, dedup="n_points")  # a rerun adds no duplicate point
    tracker.log_params_once(run_id, {"form": fit.form, "loss": fit.loss, "metric": f.metric, "metric_kind": fit.kind,
                                     "bootstrap": f.bootstrap, "ci_level": f.ci_level, "text_tokens": f.text_tokens,
                                     "round": round_no, "cells_per_round": exp.spec.rounds.cells_per_round or f.propose})
    # the conclusion is the fit run's description (the run page's first lines) and the parent's
    conclusion = analysis.conclusion.text() + (f" {check.sentence()[0].upper()}{check.sentence()[1:]}."
                                               if check is not None else "")
    tracker.set_tags(run_id, {"form": fit.form, "loss": fit.loss, "metric": f.metric, "metric_kind": fit.kind,
                              "mlflow.note.content": conclusion})
    tracker.set_tags(parent_id, {"mlflow.note.content": f"Round {round_no}: {conclusion}"})
    if done.points:  # what the law predicts for the cells it proposes, before they train
        tracker.log_dict(run_id, {"round": round_no + 1, "cells": done.points}, "forecasts.json")
    for path in written:
        tracker.log_artifact(run_id, str(path), "report")
    tracker.log_artifact(run_id, str(next_yaml))
    tracker.finish(run_id)

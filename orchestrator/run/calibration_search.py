"""Learning-rate calibration, the search: each LLM size's Ray Tune search over learning rates
(Optuna's TPE, ASHA), the winner stored in ``calibration.json`` and logged to MLflow. What counts
as calibrated, and at which rate a size trains: orchestrator/plan/calibration.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..plan.calibration import read_calibration, settings_digest, trial_cell
from ..spec import Experiment
from ..store.layout import ExperimentDir, atomic_write_json


def calibration_trainable(config: dict[str, Any], cell: dict[str, Any]) -> None:
    """A Tune trial: the short cell at ``config["lr"]``, reporting every log step to Tune."""
    from workloads.config import CellConfig
    from workloads.session import TuneSession
    from workloads.train import train

    cell = {**cell, "train": {**cell["train"], "lr": float(config["lr"])}}
    train(CellConfig.from_dict(cell), TuneSession())


def _search(exp: Experiment, llm: str, cell: dict[str, Any], storage: Path, stopper=None) -> list[dict[str, Any]]:
    """Run one size's Tune search; every trial's LR, final metrics and loss curve."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    cal = exp.spec.training.calibration

    assert cal is not None  # called only for a spec with a calibration block
    r = exp.spec.resources
    steps = cell["train"]["steps"]
    space = {"lr": (tune.loguniform if cal.log else tune.uniform)(cal.low, cal.high)}
    sampler = optuna.samplers.TPESampler(seed=cal.seed, n_startup_trials=max(1, cal.trials // 2))
    resources = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(calibration_trainable, cell=cell), resources),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="loss", mode="min", sampler=sampler),
            scheduler=ASHAScheduler(time_attr="step", metric="loss", mode="min", max_t=steps,
                                    grace_period=max(1, steps // 3), reduction_factor=2),
            num_samples=cal.trials, max_concurrent_trials=cal.concurrent_trials, reuse_actors=False),
        run_config=tune.RunConfig(name=f"calibrate-{llm.replace('/', '-')}-{int(time.time())}",
                                  storage_path=str(storage), verbose=0, stop=stopper),
    )
    trials = []
    grid = tuner.fit()
    for result in (grid[i] for i in range(len(grid))):
        if result.config is None:
            continue
        m = result.metrics or {}
        curve = []
        if result.metrics_dataframe is not None and "loss" in result.metrics_dataframe:
            df = result.metrics_dataframe
            curve = [[int(s), float(x)] for s, x in zip(df["step"], df["loss"])]
        trials.append({"lr": float(result.config["lr"]), "eval_loss": m.get("eval_loss"), "loss": m.get("loss"),
                       "steps": int(m.get("step", 0)), "completed": m.get("final") == 1.0,
                       "error": str(result.error).splitlines()[-1][:200] if result.error else None, "curve": curve})
    return trials


def calibrate(exp: Experiment, exp_dir: ExperimentDir, llms: list[str], vision: str | None = None, tracker=None,
              parent: str | None = None, echo=print, interrupt=None) -> dict[str, float]:
    """The calibrated LR of every LLM in ``llms`` — searched now, or reused from the experiment's
    state when its settings are unchanged. ``vision``: the pretrained tower the cells use. Needs a
    running Ray (``ray.init``). ``interrupt`` (orchestrator/run/interrupts.py): a search a signal cut
    short is not recorded — its best LR would be the best of the trials that happened to run."""
    state = read_calibration(exp_dir)
    for llm in llms:
        digest = settings_digest(exp, llm)
        if state["sizes"].get(llm, {}).get("settings") == digest:
            continue
        t0 = time.time()
        cell = trial_cell(exp, llm, vision).to_dict()
        if interrupt is not None:
            from .interrupts import tune_stopper

            trials = _search(exp, llm, cell, exp_dir.tune, tune_stopper(interrupt))
            interrupt.check(len(exp_dir.finished()), None, f"the learning-rate calibration of {llm}")
        else:
            trials = _search(exp, llm, cell, exp_dir.tune)
        done = [t for t in trials if t["completed"] and t["eval_loss"] is not None]
        if not done:
            raise RuntimeError(f"calibration of {llm}: no trial finished; the errors: "
                               + "; ".join(t["error"] or "stopped" for t in trials))
        best = min(done, key=lambda t: (t["eval_loss"], t["lr"]))
        state["sizes"][llm] = {"lr": best["lr"], "settings": digest, "trials": trials,
                               "seconds": time.time() - t0}
        atomic_write_json(exp_dir.calibration, state)
        echo(f"calibrated {llm}: lr {best['lr']:.3g} (eval loss {best['eval_loss']:.4f}; "
             f"{len(done)}/{len(trials)} trials completed, the rest stopped early) in {time.time() - t0:.0f} s")
        if tracker is not None and parent is not None:
            _log(tracker, parent, exp, llm, state["sizes"][llm], exp_dir)
    return {llm: state["sizes"][llm]["lr"] for llm in llms}


def _log(tracker, parent: str, exp: Experiment, llm: str, entry: dict[str, Any], exp_dir: ExperimentDir) -> None:
    """One MLflow run for the size (its chosen LR and the LR-vs-loss plot), one child per trial."""
    run_id = tracker.calibration_run(parent, exp.name, llm)
    tracker.log_metrics(run_id, {"lr": entry["lr"], "trials": len(entry["trials"]), "seconds": entry["seconds"]},
                        step=0, force=True)
    for i, t in enumerate(entry["trials"]):
        child = tracker.trial_run(run_id, exp.name, llm, i, {"lr": t["lr"]})
        for step, loss in t["curve"]:
            tracker.log_metrics(child, {"loss": loss}, step=step, force=True)
        final = {k: t[k] for k in ("eval_loss", "loss") if t[k] is not None}
        tracker.log_metrics(child, final, step=t["steps"] + 1, force=True)
        tracker.set_tags(child, {"vlmscale.trial": "completed" if t["completed"] else "stopped early"})
        tracker.finish(child)
    plot, kept = exp_dir.calibration_plot(llm)
    _plot(entry, llm, plot)
    exp_dir.publish(plot, kept)
    tracker.log_artifact(run_id, str(plot))
    tracker.finish(run_id)


def _plot(entry: dict[str, Any], llm: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for t in entry["trials"]:
        if t["loss"] is not None:
            ax.scatter(t["lr"], t["eval_loss"] if t["completed"] else t["loss"],
                       marker="o" if t["completed"] else "x", color="C0" if t["completed"] else "C3")
    ax.axvline(entry["lr"], color="k", ls="--", lw=1, label=f"chosen {entry['lr']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("eval loss (o) / train loss when stopped (x)")
    ax.set_title(f"{llm}: learning-rate calibration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Learning-rate calibration: before the grid, the best learning rate of each LLM size.

A scaling law is only as good as each point on it, and one hand-set learning rate (even scaled by
width) is too high for some sizes and too low for others. With ``training.lr`` a calibration
block, each LLM of the study gets a Ray Tune search: Optuna's TPE (seeded) proposes learning
rates, every trial trains a short cell (the study's own cell at the calibration V and steps) in
its trial actor, ASHA stops the trials whose training loss trails, and the learning rate with the
lowest final evaluation loss wins. That size's cells then train at it.

The calibration is part of the experiment's state (``<experiment>/calibration.json``, atomic):
a resumed, re-run or re-submitted experiment reuses it as long as the calibration settings are
unchanged. MLflow gets one run per size (tagged ``vlmscale.role = calibration``) with each trial
as a child run and an LR-versus-loss plot.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .layout import ExperimentDir, atomic_write_json
from .spec import Experiment, make_cell


def settings_digest(exp: Experiment, llm: str) -> str:
    """What a size's calibration depends on: the search, and the settings of the cell it trains
    but its LR (as the spec names them: a moved experiment keeps its calibration)."""
    cal = exp.spec.training.calibration
    cell = _base_cell(exp, llm)
    settings = {k: v for k, v in cell.settings.items() if k != "train.lr"}
    blob = json.dumps({"search": cal.model_dump(mode="json"), "cell": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def current_lrs(exp: Experiment, exp_dir: ExperimentDir) -> dict[str, float]:
    """The calibrated LR of every size calibrated under the spec's current settings (none without
    a calibration block): what the cells of those sizes train at."""
    if exp.spec.training.calibration is None:
        return {}
    sizes = load(exp_dir)["sizes"]
    llms = dict.fromkeys(p[0] for p in exp.spec.grid.combinations())
    return {llm: sizes[llm]["lr"] for llm in llms
            if llm in sizes and sizes[llm].get("settings") == settings_digest(exp, llm)}


def _base_cell(exp: Experiment, llm: str, vision_path: str | None = None):
    s = exp.spec
    cal = s.training.calibration
    combos = s.grid.combinations()
    v = cal.visual_tokens or min(c[1] for c in combos)
    return make_cell(exp, llm, v, combos[0][2], combos[0][3], cal.seed, vision_path=vision_path)


def trial_cell(exp: Experiment, llm: str, vision_path: str | None = None):
    """The short cell a calibration trial trains (its LR is set per trial)."""
    import dataclasses

    s = exp.spec
    cal = s.training.calibration
    cell = _base_cell(exp, llm, vision_path)
    steps = cal.trial_steps(s.training.steps)
    train = dataclasses.replace(cell.config.train, steps=steps, checkpoint_every=10**9, eval_every=0,
                                log_every=max(1, min(s.training.log_every, steps // 6 or 1)))
    data = dataclasses.replace(cell.config.data, eval_size=min(cell.config.data.eval_size, 512))
    return dataclasses.replace(cell.config, train=train, data=data, fault=None)


def load(exp_dir: ExperimentDir) -> dict[str, Any]:
    from .state import calibration_problem, read, repair_fix

    return read(exp_dir.calibration, calibration_problem, repair_fix(exp_dir.root.name) + " (the sizes are "
                "calibrated again)", missing={"sizes": {}})


def chosen_lrs(exp_dir: ExperimentDir) -> dict[str, float]:
    return {llm: entry["lr"] for llm, entry in load(exp_dir)["sizes"].items()}


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
    for result in tuner.fit():
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
    running Ray (``ray.init``). ``interrupt`` (orchestrator/interrupts.py): a search a signal cut
    short is not recorded — its best LR would be the best of the trials that happened to run."""
    state = load(exp_dir)
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
    tracker.client.log_artifact(run_id, str(plot))
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

"""``vlmscale run``: one driver per experiment takes its lock, sets it up (manifest, the tiny
tower's pretraining, MLflow) while Ray starts, then trains round by round — round 1 the grid,
each further round the cells the previous round's fit proposed (orchestrator/rounds.py) — and
fits after each round (orchestrator/finalize.py)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import SpecError
from .layout import ExperimentDir, atomic_write_json
from .spec import Cell, Experiment, expand
from .trials import plan, run_grid


@dataclass(frozen=True)
class RunOutcome:
    exp_dir: ExperimentDir
    tracking_uri: str
    parent_run_id: str
    finished: list[str]
    errored: dict[str, str]
    skipped: list[str]
    seconds: float


def vision_path(exp: Experiment, exp_dir: ExperimentDir) -> str | None:
    """Where the experiment's pretrained tiny vision tower lives, if it pretrains one."""
    from workloads.presets import is_vision_preset

    v = exp.spec.vision
    return str(exp_dir.vision) if v.pretrain is not None and is_vision_preset(v.model) else None


def prepare(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, echo=print) -> list[Cell]:
    """Write the manifest, pretrain the tiny vision tower if asked, and expand the grid."""
    manifest = {"name": exp.name, "digest": exp.digest(), "spec": yaml.safe_load(spec_text), "spec_yaml": spec_text}
    if exp.source_dir is not None:  # relative paths in the spec resolve against it, also on `resume NAME`
        manifest["source_dir"] = str(exp.source_dir)
    atomic_write_json(exp_dir.manifest, manifest)
    path = vision_path(exp, exp_dir)
    if path is not None:
        from workloads.pretrain_vision import pretrain_vision

        v = exp.spec.vision
        done = pretrain_vision(v.model, exp_dir.vision, steps=v.pretrain.steps, batch_size=v.pretrain.batch_size,
                               lr=v.pretrain.lr, cells=exp.spec.data.cells)
        if done.seconds:
            echo(f"pretrained vision tower {v.model}: cell accuracy {done.cell_accuracy:.3f} in {done.seconds:.0f} s")
    return expand(exp, path)


def run_experiment(exp: Experiment, spec_text: str, address: str | None = None, live: bool | None = None,
                   echo=print, rounds: int | None = None, storage: str | None = None) -> RunOutcome:
    """Run (or resume) the experiment: round 1 is the grid; each further round (``rounds``, else
    ``spec.rounds.count``) trains the cells the previous round's fit proposed. ``storage``: the
    storage root (default: :meth:`Experiment.storage_root`). One driver per experiment: a second
    one refuses (``lock.LockHeld``) while the first is alive."""
    from .lock import lock_for

    t0 = time.time()
    exp_dir = ExperimentDir.of(storage or exp.storage_root(), exp.name)
    exp_dir.check_writable()
    lock = lock_for(exp_dir.root).acquire(f"experiment {exp.name}")  # before anything is written
    try:
        return _run_locked(exp, exp_dir, spec_text, address, live, echo, rounds, t0)
    finally:
        lock.release()


def _set_up(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, target, echo):
    """Manifest, tower, imports, MLflow's parent and finished runs (brought up to date)."""
    from . import track
    from .imports import import_cells

    grid = prepare(exp, exp_dir, spec_text, echo)
    import_cells(exp, exp_dir, echo)
    finished = exp_dir.finished()  # read once: every ledger record is a file
    tracker = track.Tracker(*target)
    parent = tracker.parent_run(exp.name, exp.digest(), spec_text)
    tracker.mark_running(parent)
    run_ids = {key: tracker.child_run(parent, exp.name, key, record.get("params", {}))
               for key, record in finished.items()}
    track.reconcile(tracker, run_ids, finished, exp_dir)
    return grid, set(finished), tracker, parent, run_ids


def _run_locked(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, address: str | None, live: bool | None,
                echo, rounds: int | None, t0: float) -> RunOutcome:
    import ray

    from .cluster import start_ray
    from .finalize import finalize
    from .rounds import RoundLog, cells_of_round, fit_summary, round_points, should_stop
    from .track import tracking_target

    count = rounds or exp.spec.rounds.count
    if count > 1 and not exp.spec.fit.enabled:
        raise SpecError(f"{exp.name}: rounds after the first are proposed by the fit; set spec.fit.enabled: true")
    target = tracking_target(exp, exp_dir)

    # the vision tower's pretraining and MLflow's set-up overlap Ray's start (seconds each)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="vlmscale-setup")
    setting_up = pool.submit(_set_up, exp, exp_dir, spec_text, target, echo)
    try:
        cluster = start_ray(address or os.environ.get("RAY_ADDRESS"))
        grid, before, tracker, parent, run_ids = setting_up.result()
    except BaseException:
        pool.shutdown(wait=True)
        ray.shutdown()
        raise
    pool.shutdown()
    log = RoundLog.load(exp_dir)
    errors: dict[str, str | None] = {}  # each cell's cause of failure (one line)
    planned: list[Cell] = []
    vision = vision_path(exp, exp_dir)
    lrs: dict[str, float] = {}
    try:
        for number in range(1, count + 1):
            if not log.proposed(number):
                break  # the last fit proposed nothing more
            if exp.spec.training.calibration is not None:  # the round's LLM sizes not calibrated yet
                from .calibrate import calibrate

                llms = [c.llm for c in grid] if number == 1 else [p[0] for p in round_points(log, number)]
                lrs.update(calibrate(exp, exp_dir, list(dict.fromkeys(llms)), vision, tracker, parent, echo))
                if number == 1:
                    grid = expand(exp, vision, lrs)
            cells = cells_of_round(exp, log, number, grid, vision, lrs)
            planned += cells
            errors.update(_train_round(exp, exp_dir, cells, number, tracker, parent, run_ids, target, cluster,
                                       live, echo))
            if not exp.spec.fit.enabled:
                break
            analysis = finalize(exp, exp_dir, spec_text, tracker, parent, echo, number, log.rounds)
            if analysis is None:
                break
            log.record_fit(number, fit_summary(analysis, len(exp_dir.finished())))
            log.save(exp_dir)
            if number == count or should_stop(exp, log.entry(number)["fit"]):
                break
            if not log.proposed(number + 1):
                points = [{"llm": p.candidate.llm, "visual_tokens": p.candidate.visual_tokens,
                           "compressor": p.candidate.compressor, "task": exp.spec.grid.tasks[0],
                           "seed": exp.spec.grid.seeds[0], "reason": p.reason} for p in analysis.picks]
                log.add_round(number + 1, points)
                log.save(exp_dir)  # before anything of round number+1 trains: a restart resumes it
                echo(f"round {number + 1}: {len(points)} proposed cells")
    finally:
        ray.shutdown()

    finished = exp_dir.finished()
    errored = {k: cause for k, cause in errors.items() if cause and k not in finished}
    tracker.log_metrics(parent, {"cells_total": len(planned), "cells_finished": len(finished),
                                 "cells_errored": len(errored)}, step=len(finished), dedup="cells_finished")
    done = not errored and all(c.key in finished for c in planned)
    tracker.finish(parent, "FINISHED" if done else "FAILED")
    return RunOutcome(exp_dir, target[0], parent, sorted(finished), errored, sorted(before), time.time() - t0)


def _train_round(exp: Experiment, exp_dir: ExperimentDir, cells: list[Cell], number: int, tracker, parent: str,
                 run_ids: dict[str, str], target, cluster: dict[str, float], live, echo) -> dict[str, str | None]:
    """Train the round's cells that are not finished; every cell gets its MLflow run, tagged with the round."""
    from . import progress, track

    for cell in cells:
        run_ids[cell.key] = tracker.child_run(parent, exp.name, cell.key, track.flat_params(cell), round_no=number)
    p = plan(exp, cells, exp_dir, cluster)
    for cell in p.todo:  # RUNNING only once its trial starts (the Tune callback marks it)
        tracker.client.update_run(run_ids[cell.key], status="SCHEDULED")
        # reports a driver never delivered (it died while MLflow was away), before the cell resumes
        tracker.log_history(run_ids[cell.key], exp_dir.progress_history(cell.key))
    board = progress.ProgressBoard()
    tc = exp.spec.training
    for cell in cells:
        record = p.finished.get(cell.key)
        board.add(cell.key, cell.config.train.total_steps, tc.batch_size, "finished" if record else "pending", record)
    label = f" round {number}:" if exp.spec.rounds.count > 1 or number > 1 else ""
    echo(f"{exp.name}:{label} {len(cells)} cells, {len(cells) - len(p.todo)} already finished, {len(p.todo)} to run, "
         f"{p.concurrency} at a time; MLflow: {target[0]}")
    if not p.todo:
        return {}
    callbacks = [track.tune_callback(target, run_ids), progress.tune_callback(board, live)]
    return run_grid(exp, exp_dir, p, callbacks)

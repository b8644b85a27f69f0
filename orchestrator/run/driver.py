"""``vlmscale run``: one driver per experiment takes its lock, sets it up (manifest, the tiny
tower's pretraining, MLflow) while Ray starts, then trains round by round — round 1 the grid,
each further round the cells the previous round's fit proposed (orchestrator/plan/rounds.py) — and
fits after each round (orchestrator/run/after_round.py)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..plan.cells import StudyCells, tower_dir
from ..plan.identity import Change, changes, refusal, supersede, write_identity
from ..protocols import CellStatus
from ..spec import Cell, Experiment
from ..spec.cells import tower
from ..spec.load import read_yaml
from ..store import defects
from ..store.layout import ExperimentDir, atomic_write_json
from .interrupts import Interrupt, Interrupted, tune_search, tune_stopper
from .trials import plan, run_grid

if TYPE_CHECKING:
    from ..tracking.tracker import Tracker


@dataclass(frozen=True)
class RunOutcome:
    exp_dir: ExperimentDir
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    finished: list[str]
    errored: dict[str, str]
    skipped: list[str]
    seconds: float


def prepare(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, echo=print) -> list[Cell]:
    """Write the manifest, pretrain the tiny vision tower if asked, and expand the grid."""
    manifest = {"name": exp.name, "digest": exp.digest(), "spec": read_yaml(spec_text, "the spec"), "spec_yaml": spec_text}
    if exp.source_dir is not None:  # relative paths in the spec resolve against it, also on `resume NAME`
        manifest["source_dir"] = str(exp.source_dir)
    atomic_write_json(exp_dir.manifest, manifest)
    path = tower_dir(exp, exp_dir)
    if path is not None:
        from workloads.pretrain_vision import finished

        v, t = exp.spec.vision, tower(exp.spec)
        assert t is not None  # a tower directory exists only for a spec that pretrains one
        args: dict[str, Any] = {"preset": t.preset, "out_dir": str(path), "steps": t.steps, "batch_size": t.batch_size, "lr": t.lr,
                "seed": t.seed, "cells": t.cells}
        if finished(**args) is None:
            done = _pretrain_in_a_process(args)
            echo(f"pretrained vision tower {v.model}: cell accuracy {done['cell_accuracy']:.3f} "
                 f"in {done['seconds']:.0f} s")
    return StudyCells(exp, exp_dir, path).grid()


def _pretrain_in_a_process(args: dict) -> dict:
    """The tower's pretraining (workloads/pretrain_vision.py) in a child process: it imports torch
    and transformers on the machine's other core while this one opens MLflow and Ray starts, and
    the driver never loads them (hundreds of MB less on a head node). Its refusal and storage
    failures come back as the same errors an in-process call raised."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import workloads

    from .cluster import WORKER_ENV

    here = str(Path(workloads.__file__).resolve().parents[1])
    env = {**os.environ, **WORKER_ENV,
           "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    # its own session: a Ctrl-C reaches the driver, which stops once the tower is written, as before
    r = subprocess.run([sys.executable, "-m", "workloads.pretrain_vision", json.dumps(args)], capture_output=True,
                       text=True, env=env, start_new_session=True)
    lines = r.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if r.returncode == 0 and lines else None
    except json.JSONDecodeError:
        out = None
    if not isinstance(out, dict):
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"pretraining the vision tower {args['preset']} failed (exit {r.returncode}):\n{tail}")
    if "refused" in out:
        raise ValueError(out["refused"])
    if "storage" in out:
        raise OSError(out["errno"], out["storage"], out["filename"])
    return out


def run_experiment(exp: Experiment, spec_text: str, address: str | None = None, live: bool | None = None,
                   echo=print, rounds: int | None = None, storage: str | None = None,
                   restart_changed: bool = False) -> RunOutcome:
    """Run (or resume) the experiment: round 1 is the grid; each further round (``rounds``, else
    ``spec.rounds.count``) trains the cells the previous round's fit proposed. ``storage``: the
    storage root (default: :meth:`Experiment.storage_root`). One driver per experiment: a second
    one refuses (``lock.LockHeld``) while the first is alive. SIGINT or SIGTERM stops it cleanly
    (orchestrator/run/interrupts.py): :class:`Interrupted`, the lock released, every cell resumable.
    A cell whose finished result or checkpoints were made under other settings is refused before
    anything is written, or with ``restart_changed`` moved aside and trained again
    (orchestrator/plan/identity.py)."""
    from ..store.lock import lock_for
    from ..tracking.tracker import check_reachable, tracking_target

    t0 = time.time()
    exp_dir = ExperimentDir.of(storage or exp.storage_root(), exp.name)
    check_reachable(tracking_target(exp, exp_dir)[0])  # in seconds, not MLflow's minutes of retries
    exp_dir.check_writable()
    lock = lock_for(exp_dir.root).acquire(f"experiment {exp.name}")  # before anything is written
    from ..store import index

    index.record(exp.name, str(exp_dir.root.parent))  # a bare name finds it from any folder
    try:
        from .repair import heal_ledger

        heal_ledger(exp_dir, echo)  # a damaged record: its cell is evaluated again from its final checkpoint
        superseded = _decide(exp, exp_dir, restart_changed, echo)
        with Interrupt(exp_dir, exp.spec.failure.grace_seconds, echo) as interrupt:
            options = RunOptions(address, live, echo, rounds)
            return _run_locked(exp, exp_dir, spec_text, options, t0, interrupt, superseded)
    finally:
        lock.release()


def _decide(exp: Experiment, exp_dir: ExperimentDir, restart_changed: bool, echo) -> list[Change]:
    """Refuse (writing nothing) or, asked to, set aside every cell whose state another spec made."""
    found = changes(exp_dir, [c for _, c in StudyCells.of(exp, exp_dir).planned()], exp_dir.finished())
    if found and not restart_changed:
        raise refusal(exp.name, found)
    if found:
        supersede(exp_dir, found)
        echo(f"{exp.name}: {len(found)} cell(s) changed since they trained; their state is kept under "
             f"{exp_dir.root / 'superseded'} and they train again")
    return found


@dataclass(frozen=True)
class RunOptions:
    """How ``run`` was asked to run: the Ray cluster, the live table, the console, the rounds."""

    address: str | None = None
    live: bool | None = None
    echo: Callable[[str], object] = print
    rounds: int | None = None


@dataclass(frozen=True)
class RunContext:
    """What every step of a set-up run shares: the experiment and its directory, the console and
    the interrupt, MLflow (its target, the tracker, the parent run, each cell's run, filled in as
    cells get runs) and the Ray cluster's resources."""

    exp: Experiment
    exp_dir: ExperimentDir
    spec_text: str
    options: RunOptions
    interrupt: Interrupt
    target: tuple[str, str, str | None]
    tracker: Tracker
    parent: str
    run_ids: dict[str, str]
    cluster: dict[str, float]

    @property
    def echo(self) -> Callable[[str], object]:
        return self.options.echo


def _set_up(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, target, echo,
            superseded: list[Change]) -> tuple[list[Cell], set[str], Tracker, str, dict[str, str]]:
    """Manifest, tower, imports, MLflow's parent and finished runs (brought up to date)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..store.warm_start import import_cells
    from ..tracking import tracker as track

    # MLflow builds a new store's tables (seconds on sqlite) while the tower pretrains
    with ThreadPoolExecutor(1, thread_name_prefix="vlmscale-mlflow") as pool:
        opening = pool.submit(track.Tracker, *target)
        grid = prepare(exp, exp_dir, spec_text, echo)
        import_cells(exp, exp_dir, echo)
        finished = exp_dir.finished()  # read once: every ledger record is a file
        tracker = opening.result()
    parent = tracker.parent_run(exp.name, exp.digest(), spec_text)
    tracker.mark_running(parent)
    for change in superseded:  # their runs stay, marked; the cells get new ones
        tracker.mark_superseded(exp.name, change.key, change.old_digest)
    # a rebuilt MLflow store gets every param of a finished cell back
    run_ids = {key: tracker.child_run(parent, exp.name, key, record.mlflow_params(), digest=record.config_digest)
               for key, record in finished.items()}
    track.reconcile(tracker, run_ids, finished, exp_dir, exp.spec.fit.text_tokens, exp.spec.evaluation.groups)
    return grid, set(finished), tracker, parent, run_ids


def _start(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, options: RunOptions, interrupt: Interrupt,
           superseded: list[Change]) -> tuple[RunContext, list[Cell], set[str]]:
    """Set the run up while Ray starts: the vision tower's pretraining and MLflow's set-up overlap
    Ray's start (seconds each). The run's context, the grid, and the cells finished before it."""
    from concurrent.futures import ThreadPoolExecutor

    import ray

    from ..tracking.tracker import tracking_target
    from .cluster import start_ray

    target = tracking_target(exp, exp_dir)
    pool = ThreadPoolExecutor(1, thread_name_prefix="vlmscale-setup")
    setting_up = pool.submit(_set_up, exp, exp_dir, spec_text, target, options.echo, superseded)
    try:
        cluster = start_ray(options.address or os.environ.get("RAY_ADDRESS"))
        interrupt.install()  # ray.init replaced our SIGTERM handler with its own
        grid, before, tracker, parent, run_ids = setting_up.result()
    except BaseException:
        pool.shutdown(wait=True)
        ray.shutdown()
        raise
    pool.shutdown()
    ctx = RunContext(exp, exp_dir, spec_text, options, interrupt, target, tracker, parent, run_ids, cluster)
    return ctx, grid, before


def _run_locked(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, options: RunOptions, t0: float,
                interrupt: Interrupt, superseded: list[Change]) -> RunOutcome:
    import ray

    from ..plan.rounds import RoundLog, grid_round, round_points, should_stop
    from .after_round import finalize

    count = options.rounds or exp.spec.rounds.count
    if count > 1 and not exp.spec.fit.enabled:
        raise SpecError(f"{exp.name}: rounds after the first are proposed by the fit; set spec.fit.enabled: true")
    ctx, grid, before = _start(exp, exp_dir, spec_text, options, interrupt, superseded)
    defects.clear(exp_dir)  # a file fixed since the last run is tried again
    log = RoundLog.load(exp_dir)
    errors: dict[str, str | None] = {}  # each cell's cause of failure (one line)
    planned: list[Cell] = []
    study = StudyCells(exp, exp_dir, tower_dir(exp, exp_dir))  # no rate calibrated yet in this run
    first = grid_round(exp)  # the grid is round 1, or reaches the round a proposed next.yaml added
    closing: threading.Thread | None = None
    try:
        for number in range(first, first + count):
            interrupt.check(len(exp_dir.finished()), len(planned) or len(grid))
            if not log.proposed(number, first):
                break  # the last fit proposed nothing more
            if exp.spec.training.calibration is not None:  # the round's LLM sizes not calibrated yet
                from .calibration_search import calibrate

                llms = [c.llm for c in grid] if number == first else [p[0] for p in round_points(log, number)]
                study = study.calibrated(calibrate(exp, exp_dir, list(dict.fromkeys(llms)), study.vision, ctx.tracker,
                                                   ctx.parent, options.echo, interrupt))
                if number == first:
                    grid = study.grid()
            cells = study.of_round(log, number, grid)
            planned += cells
            rounds_of = dict(zip((c.key for c in grid), exp.spec.grid.rounds())) if number == first else {}
            errors.update(_train_round(ctx, cells, number, rounds_of))
            interrupt.check(len(exp_dir.finished()), len(planned))  # no fit of a grid cut short
            if not exp.spec.fit.enabled:
                break
            if number == first + count - 1:  # nothing trains after this fit: Ray stops while it runs
                closing = threading.Thread(target=ray.shutdown, name="vlmscale-ray-shutdown")
                closing.start()
            fitted = finalize(exp, exp_dir, spec_text, ctx.tracker, ctx.parent, options.echo, number, log.rounds)
            if fitted is None:
                break
            log.record_fit(number, {**fitted.summary(), "cells": len(exp_dir.finished())})
            log.save(exp_dir)
            if number == first + count - 1 or should_stop(exp, log.entry(number)["fit"]):
                break
            if not log.proposed(number + 1, first):
                points = fitted.points  # each with the law's forecast, written before it trains
                log.add_round(number + 1, points)
                log.save(exp_dir)  # before anything of round number+1 trains: a restart resumes it
                options.echo(f"round {number + 1}: {len(points)} proposed cells")
    except Interrupted:
        _mark_killed(ctx)
        raise
    finally:
        if closing is not None:
            closing.join()
        else:
            ray.shutdown()

    finished = exp_dir.finished()
    errored = {k: cause for k, cause in errors.items() if cause and k not in finished}
    ctx.tracker.log_metrics(ctx.parent, {"cells_total": len(planned), "cells_finished": len(finished),
                                         "cells_errored": len(errored)}, step=len(finished), dedup="cells_finished")
    done = not errored and all(c.key in finished for c in planned)
    ctx.tracker.finish(ctx.parent, "FINISHED" if done else "FAILED")
    return RunOutcome(exp_dir, ctx.target[0], ctx.tracker.experiment_id, ctx.parent, sorted(finished), errored,
                      sorted(before), time.time() - t0)


def _mark_killed(ctx: RunContext) -> None:
    """MLflow's side of an interrupt: every unfinished cell's run and the parent are KILLED (the
    ledger, not MLflow, says what finished; the next run marks them RUNNING again)."""
    finished = ctx.exp_dir.finished()
    for key, run_id in ctx.run_ids.items():
        if key not in finished:
            ctx.tracker.set_tags(run_id, {"vlmscale.status": CellStatus.INTERRUPTED.value})
            ctx.tracker.finish(run_id, "KILLED")
    ctx.tracker.finish(ctx.parent, "KILLED")


def _train_round(ctx: RunContext, cells: list[Cell], number: int,
                 rounds_of: dict[str, int] | None = None) -> dict[str, str | None]:
    """Train the round's cells that are not finished; every cell gets its MLflow run, tagged with the
    round that brought it (``rounds_of``, else ``number``)."""
    from ..tracking.cell_runs import mlflow_callback
    from ..tracking.tracker import flat_params
    from . import progress

    exp, exp_dir, tracker = ctx.exp, ctx.exp_dir, ctx.tracker
    rounds_of = rounds_of or {}
    for cell in cells:
        ctx.run_ids[cell.key] = tracker.child_run(ctx.parent, exp.name, cell.key, flat_params(cell),
                                                  round_no=rounds_of.get(cell.key, number), digest=cell.digest)
    p = plan(exp, cells, exp_dir, ctx.cluster)
    for cell in p.todo:  # RUNNING only once its trial starts (the Tune callback marks it)
        if not exp_dir.identity_path(cell.key).exists():
            write_identity(exp_dir, cell)
        tracker.mark_scheduled(ctx.run_ids[cell.key])
        # reports a driver never delivered (it died while MLflow was away), before the cell resumes
        tracker.log_history(ctx.run_ids[cell.key], exp_dir.progress_history(cell.key))
    board = progress.ProgressBoard(slots=p.concurrency)
    tc = exp.spec.training
    for cell in cells:
        board.add(cell.key, cell.config.train.total_steps, tc.batch_size, p.finished.get(cell.key))
    label = f" round {number}:" if exp.spec.rounds.count > 1 or number > 1 else ""
    ctx.echo(f"{exp.name}:{label} {len(cells)} cells, {len(cells) - len(p.todo)} already finished, "
             f"{len(p.todo)} to run, {p.concurrency} at a time; MLflow: {ctx.target[0]}")
    if not p.todo:
        return {}
    callbacks = [mlflow_callback(ctx.target, ctx.run_ids, exp.spec.fit.text_tokens, exp.spec.evaluation.groups),
                 progress.progress_callback(board, ctx.options.live)]
    return run_grid(exp, exp_dir, p, callbacks, stopper=tune_stopper(ctx.interrupt),
                    search=lambda concurrency: tune_search(ctx.interrupt, concurrency))

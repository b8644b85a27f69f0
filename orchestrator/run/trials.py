"""One cell, one Ray Tune trial: the trial function, the choice of launcher, and the grid of trials.

A single-worker DDP cell trains in its trial's own process (Tune reuses the process, so torch and
transformers are imported once); several workers or DeepSpeed make the cell a Ray Train
``TorchTrainer`` driven by the trial (``resources.launcher: ray_train`` forces that for every
cell). Both run the same loop and checkpoint the same way.

Resumption happens at three levels, each idempotent:
* a worker crash: Tune (in-trial) or Ray Train (``FailureConfig``) restarts it, and the loop
  resumes from the cell's last complete checkpoint;
* a trial (cell driver) crash: Tune reruns the trial function, whose re-created trainer finds
  the same run directory and its checkpoints;
* a driver (``vlmscale run``) crash: running again starts a Tune run over the cells the ledger
  does not list as finished; they find their checkpoints and continue. (Restoring the old Tune
  state instead would bring back its pickled callbacks — a stale MLflow client and console — and
  adds nothing the ledger and the checkpoints do not already give.) Every trial also consults the
  ledger first, so nothing finished is trained twice.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import asdict, dataclass
from typing import Any

from workloads.config import CellConfig

from ..protocols import CellJob, LedgerRecord, TrialReport, WorkerSlots
from ..protocols.cell_job import CONFIG_KEY
from ..spec import CELL_SLOT, Cell, Experiment
from ..store import defects
from ..store.layout import ExperimentDir
from .cluster import derive_concurrency, has_cell_slots


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]
    todo: list[Cell]
    finished: dict[str, LedgerRecord]
    concurrency: int


def plan(exp: Experiment, cells: list[Cell], exp_dir: ExperimentDir, cluster: dict[str, float]) -> Plan:
    """What is left to train of ``cells``, at what concurrency; a cell whose state other settings
    made is refused (the driver checks every cell before it writes anything: orchestrator/plan/identity.py)."""
    from ..plan.identity import changes, refusal

    finished = exp_dir.finished()
    found = changes(exp_dir, cells, finished)
    if found:
        raise refusal(exp.name, found)
    todo = [c for c in cells if c.key not in finished]
    return Plan(cells, todo, finished, derive_concurrency(exp, cluster, len(todo)))


# ------------------------------------------------------------------------------------------------
# the trial function (runs in a Tune trial actor)


def cell_trainable(config: dict[str, Any]) -> None:
    """Train one cell (in this trial's process, or as a Ray Train job) and record it. A failure
    that will recur ends the cell at once with its cause (reported as ``cell_error``, not raised:
    Tune would retry it); one that may pass is raised, and Tune retries the cell from its last
    checkpoint. Either way its traceback goes to the cell's log under the experiment."""
    from ray import tune

    from workloads.failures import data_file, describe, interrupted

    job = CellJob.of_trial(config)
    exp_dir = ExperimentDir.at(job.exp_dir)
    done = exp_dir.finished_record(job.key)
    if done is not None and done.config_digest == job.config_digest:
        tune.report(TrialReport.skipped(done).to_result())  # finished before a driver restart
        return
    if exp_dir.stop_request.exists():  # the run is stopping: no new cells start
        tune.report(TrialReport.interrupted().to_result())
        return
    defect = defects.found(exp_dir, CellConfig.from_dict(job.config).data_files())
    if defect is not None:  # another cell of this run failed on a file this one reads
        exp_dir.record_error(job.key, defect.line(), False, defect.line())
        tune.report(TrialReport.error(defect.line(), str(exp_dir.log_path(job.key))).to_result())
        return
    exp_dir.clear_error(job.key)  # this attempt supersedes the last one's failure
    try:
        metrics, checkpoint = _train(job, exp_dir)
    except Exception as e:  # noqa: BLE001 — every failure is classified and kept, then retried or reported
        if interrupted(e):
            tune.report(TrialReport.interrupted().to_result())  # it checkpointed on the run's stop request
            return
        failure = describe(e)
        exp_dir.record_error(job.key, failure.cause, failure.transient, failure.details)
        if (path := data_file(e)) is not None:
            defects.record(exp_dir, path, failure.cause, job.key)
        if failure.transient:
            raise
        tune.report(TrialReport.error(failure.cause, str(exp_dir.log_path(job.key))).to_result())
        return
    record = LedgerRecord(job.key, metrics, params=job.params, settings=job.settings, config_digest=job.config_digest,
                          checkpoint=checkpoint, finished_at=time.time())
    exp_dir.record_finished(record)
    exp_dir.clear_error(job.key)
    tune.report(TrialReport.finished(record).to_result())  # the driver logs the cell from this report


def _train(job: CellJob, exp_dir: ExperimentDir) -> tuple[dict[str, Any], str | None]:
    """The cell's final metrics and last checkpoint. As a Ray Train job it is retried here, from its
    checkpoints, while its failures may pass: Ray Train itself would retry any failure."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from workloads.failures import interrupted, is_transient
    from workloads.launch import WorkerResources, build_trainer, metrics_log_callback, train_in_trial

    cell, resources = CellConfig.from_dict(job.config), WorkerResources(**asdict(job.resources))
    progress, stop = str(exp_dir.progress_path(job.key)), str(exp_dir.stop_request)
    answers = str(exp_dir.answers(job.key))
    if job.in_trial:
        return train_in_trial(cell, str(exp_dir.cells / job.key), progress, stop_file=stop, answers_dir=answers)
    for attempt in range(job.retries + 1):
        trainer = build_trainer(cell, resources, storage_path=str(exp_dir.cells), name=job.key, max_failures=0,
                                callbacks=[TuneReportCallback(), metrics_log_callback(progress)], stop_file=stop,
                                answers_dir=answers)
        result = trainer.fit()  # a trainer of the same name finds the checkpoints of the last attempt
        if result.error is None:
            return result.metrics, result.checkpoint.path if result.checkpoint else None
        if attempt == job.retries or not is_transient(result.error) or interrupted(result.error):
            raise result.error
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------
# the grid of trials (runs in the driver)


def run_grid(exp: Experiment, exp_dir: ExperimentDir, p: Plan, callbacks: list,
             stopper=None, search=None) -> dict[str, str | None]:
    """Run (or resume) the Tune experiment over the cells that are not finished; each cell's cause
    of failure (one line), or None."""
    from ray import tune

    from workloads.launch import WorkerResources, needs_ray_train

    r = exp.spec.resources
    slots = WorkerSlots(r.workers_per_cell, r.cpus_per_worker, r.gpus_per_worker)
    per_cell = WorkerResources(**asdict(slots))
    in_trial = r.launcher == "auto" and not any(needs_ray_train(c.config, per_cell) for c in p.todo)
    retries = exp.spec.failure.retries_per_cell
    jobs = [CellJob(c.key, c.params(), c.config.to_dict(), c.digest, c.settings, str(exp_dir.root), slots, retries,
                    in_trial) for c in p.todo]
    if in_trial:
        trial = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}
    else:  # the trial only drives a Ray Train job: a cell slot, no CPU
        trial = {"CPU": 0, CELL_SLOT: 1} if has_cell_slots() else {"CPU": 0.01}
    trainable = tune.with_resources(cell_trainable, trial)
    attempt = 1 + (sum(1 for d in exp_dir.tune.iterdir() if d.name.startswith("attempt-"))
                   if exp_dir.tune.exists() else 0)
    tuner = tune.Tuner(
        trainable,
        param_space={CONFIG_KEY: tune.grid_search([job.to_dict() for job in jobs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=p.concurrency, reuse_actors=in_trial,
                                    search_alg=search(p.concurrency) if search else None,
                                    trial_dirname_creator=_trial_name, trial_name_creator=_trial_name),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}", storage_path=str(exp_dir.tune), verbose=0, callbacks=callbacks, stop=stopper,
            # in a trial, a crashed cell is retried by Tune (and resumes from its checkpoints);
            # under Ray Train, Ray Train retries the workers and Tune only the trial's driver
            failure_config=tune.FailureConfig(max_failures=retries if in_trial else 1),
        ),
    )
    try:
        grid = tuner.fit()
    except (EOFError, pickle.UnpicklingError) as e:
        # Tune reads each failed trial's error back from storage; a full disk cut that file short
        finished = exp_dir.finished()
        lost = (f"the cell failed and its error could not be read back from storage ({type(e).__name__}: {e}); "
                "is the storage full?")
        return {job.key: None if job.key in finished else lost for job in jobs}
    results = [grid[i] for i in range(len(grid))]
    return {CellJob.of_trial(r.config).key: _cause(r) for r in results if r.config}


def _cause(result) -> str | None:
    from workloads.failures import cause_line

    if result.error is not None:
        return cause_line(result.error)
    report = TrialReport.from_result(result.metrics)
    return report.cause if report is not None else None


def _trial_name(trial) -> str:
    return CellJob.of_trial(trial.config).key

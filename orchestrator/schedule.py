"""Run an experiment: a Ray Tune grid whose trials each drive one cell's Ray Train ``TorchTrainer``.

Resumption happens at three levels, each idempotent:
* a worker crash: Ray Train's ``FailureConfig`` restarts the worker group, which resumes from the
  cell's last checkpoint (the train loop restores it);
* a trial (cell driver) crash: Tune's ``FailureConfig`` reruns the trial function, whose
  re-created trainer finds the same run directory and its checkpoints;
* a driver (``vlmscale run``) crash: running again starts a Tune run over the cells the ledger
  does not list as finished; their trainers find their checkpoints and continue. (Restoring the
  old Tune state instead would bring back its pickled callbacks — a stale MLflow client and
  console — and adds nothing the ledger and the Train checkpoints do not already give.) Every
  trial also consults the ledger first, so nothing finished is trained twice.

Trial drivers hold no CPU: each holds one ``vlmscale_cell_slot``, a custom resource the driver
gives the local node (and the KubeRay head advertises), and the slot count is the concurrency
derived from the resources — so drivers can never starve their own workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any

import yaml

from workloads.config import CellConfig

from .layout import ExperimentDir, atomic_write_json
from .spec import Cell, Experiment, SpecError, expand

SLOT = "vlmscale_cell_slot"
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    "TRANSFORMERS_VERBOSITY": "error",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
    # workers' logs are read in `kubectl logs`: no progress bars from transformers' save/load
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def config_digest(config: CellConfig) -> str:
    blob = json.dumps(config.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]
    todo: list[Cell]
    finished: dict[str, dict[str, Any]]
    concurrency: int


# ------------------------------------------------------------------------------------------------
# the trial function (runs in a Tune trial actor)


def cell_trainable(config: dict[str, Any]) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from workloads.launch import WorkerResources, build_trainer, metrics_log_callback, train_in_trial

    job = config["cell"]
    exp_dir = ExperimentDir.at(job["exp_dir"])
    done = exp_dir.finished_record(job["key"])
    if done is not None and done.get("config_digest") == job["config_digest"]:
        tune.report({**done["metrics"], "skipped": 1})  # finished before a driver restart
        return
    cell, resources = CellConfig.from_dict(job["config"]), WorkerResources(**job["resources"])
    if job["in_trial"]:
        metrics, checkpoint = train_in_trial(cell, str(exp_dir.cells / job["key"]),
                                             str(exp_dir.progress_path(job["key"])))
        _record(exp_dir, job, metrics, checkpoint)
        return
    trainer = build_trainer(
        cell,
        resources,
        storage_path=str(exp_dir.cells),
        name=job["key"],
        max_failures=job["retries"],
        callbacks=[TuneReportCallback(), metrics_log_callback(str(exp_dir.progress_path(job["key"])))],
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    _record(exp_dir, job, result.metrics, result.checkpoint.path if result.checkpoint else None)


def _record(exp_dir: ExperimentDir, job: dict[str, Any], metrics: dict[str, Any], checkpoint: str | None) -> None:
    exp_dir.record_finished(job["key"], {
        "key": job["key"], "params": job["params"], "config_digest": job["config_digest"], "metrics": metrics,
        "checkpoint": checkpoint, "finished_at": time.time(),
    })


# ------------------------------------------------------------------------------------------------
# the driver


def vision_path(exp: Experiment, exp_dir: ExperimentDir) -> str | None:
    """Where the experiment's pretrained tiny vision tower lives, if it pretrains one."""
    from workloads.presets import is_vision_preset

    v = exp.spec.vision
    return str(exp_dir.vision) if v.pretrain is not None and is_vision_preset(v.model) else None


def prepare(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, echo=print) -> list[Cell]:
    """Write the manifest, pretrain the tiny vision tower if asked, and expand the grid."""
    atomic_write_json(exp_dir.manifest, {"name": exp.name, "digest": exp.digest(), "spec": yaml.safe_load(spec_text),
                                         "spec_yaml": spec_text})
    path = vision_path(exp, exp_dir)
    if path is not None:
        from workloads.pretrain_vision import pretrain_vision

        v = exp.spec.vision
        done = pretrain_vision(v.model, exp_dir.vision, steps=v.pretrain.steps, batch_size=v.pretrain.batch_size,
                               lr=v.pretrain.lr, cells=exp.spec.data.cells)
        if done.seconds:
            echo(f"pretrained vision tower {v.model}: cell accuracy {done.cell_accuracy:.3f} in {done.seconds:.0f} s")
    return expand(exp, path)


def plan(exp: Experiment, cells: list[Cell], exp_dir: ExperimentDir, cluster: dict[str, float]) -> Plan:
    finished = exp_dir.finished()
    for cell in cells:
        record = finished.get(cell.key)
        if record is not None and "imported_from" not in record \
                and record.get("config_digest") != config_digest(cell.config):
            raise SpecError(
                f"{exp.name}: cell {cell.key} already finished with a different configuration; "
                "revert the change or run it as a new experiment (metadata.name)"
            )
    todo = [c for c in cells if c.key not in finished]
    return Plan(cells, todo, finished, derive_concurrency(exp, cluster, len(todo)))


def derive_concurrency(exp: Experiment, cluster: dict[str, float], cells: int) -> int:
    """How many cells fit at once: every cell's workers must get their CPUs and GPUs."""
    r = exp.spec.resources
    cpu, gpu = r.workers_per_cell * r.cpus_per_worker, r.workers_per_cell * r.gpus_per_worker
    limits = [int(cluster.get("CPU", 0) // cpu)]
    if gpu > 0:
        limits.append(int(cluster.get("GPU", 0) // gpu))
    fit = min(limits)
    if fit < 1:
        have = f"{cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs"
        raise SpecError(
            f"{exp.name}: one cell needs {cpu:g} CPUs and {gpu:g} GPUs (resources.workers_per_cell x per-worker) "
            f"but the Ray cluster has {have}; lower spec.resources or use a bigger cluster"
        )
    if r.max_concurrent_cells:
        fit = min(fit, r.max_concurrent_cells)
    return max(1, min(fit, max(cells, 1)))


def start_ray(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    import ray

    if ray.is_initialized():
        return dict(ray.cluster_resources())
    import logging

    env = {"env_vars": WORKER_ENV}
    level = logging.ERROR if os.environ.get("VLMSCALE_QUIET") == "1" else logging.INFO
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level=level)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        # one slot per CPU is an upper bound; the Tuner's max_concurrent_trials is the real limit
        ray.init(num_cpus=cpus, resources={SLOT: cpus}, include_dashboard=False, log_to_driver=False,
                 runtime_env=env, logging_level=level)
    return dict(ray.cluster_resources())


def run_grid(exp: Experiment, exp_dir: ExperimentDir, p: Plan, callbacks: list) -> dict[str, Any]:
    """Run (or resume) the Tune experiment over the cells that are not finished."""
    import ray
    from ray import tune

    from workloads.launch import WorkerResources, needs_ray_train

    r = exp.spec.resources
    resources = {"num_workers": r.workers_per_cell, "cpus_per_worker": r.cpus_per_worker,
                 "gpus_per_worker": r.gpus_per_worker}
    # a single DDP worker trains in the trial's own process: no Ray Train start-up per cell, and
    # Tune reuses the process (torch and transformers imported once) from cell to cell
    per_cell = WorkerResources(**resources)
    in_trial = r.launcher == "auto" and not any(needs_ray_train(c.config, per_cell) for c in p.todo)
    retries = exp.spec.failure.retries_per_cell
    jobs = [{
        "key": c.key, "params": c.params(), "config": c.config.to_dict(), "config_digest": config_digest(c.config),
        "exp_dir": str(exp_dir.root), "resources": resources, "retries": retries, "in_trial": in_trial,
    } for c in p.todo]
    if in_trial:
        trial = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}
    else:  # the trial only drives a Ray Train job: a cell slot, no CPU
        has_slots = ray.cluster_resources().get(SLOT, 0) >= 1
        trial = {"CPU": 0, SLOT: 1} if has_slots else {"CPU": 0.01}
    trainable = tune.with_resources(cell_trainable, trial)
    attempt = 1 + (sum(1 for d in exp_dir.tune.iterdir() if d.name.startswith("attempt-"))
                   if exp_dir.tune.exists() else 0)
    tuner = tune.Tuner(
        trainable,
        param_space={"cell": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=p.concurrency, reuse_actors=in_trial,
                                    trial_dirname_creator=_trial_name, trial_name_creator=_trial_name),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}", storage_path=str(exp_dir.tune), verbose=0, callbacks=callbacks,
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
        lost = RuntimeError(f"the cell failed and its error could not be read back from storage "
                            f"({type(e).__name__}: {e}); is the storage full?")
        return {job["key"]: None if job["key"] in finished else lost for job in jobs}
    return {r.config["cell"]["key"]: r.error for r in grid if r.config}


def _trial_name(trial) -> str:
    return trial.config["cell"]["key"]


def finalize(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, tracker, parent: str, echo=print,
             round_no: int = 1, history: list[dict[str, Any]] | None = None):
    """The job after each round: fit the law, the frontier and the proposals; write the report
    and next.yaml under <exp>/fit and log them as the round's "fit" MLflow run. Returns the
    analysis (None when the data cannot be fitted yet)."""
    from .scaling.analysis import analyze, experiment_candidates, format_analysis, next_spec, observations_from_rows
    from .scaling.forms import FitError
    from .scaling.report import write_report
    from .results import rows

    f = exp.spec.fit
    table = rows(exp, exp_dir)
    obs = observations_from_rows(table, f.metric, f.metric_kind)
    k = exp.spec.rounds.cells_per_round or f.propose
    candidates = experiment_candidates(exp, obs, table)  # never proposes a cell twice
    from .profiling import cost_models

    _, measured = cost_models(exp, exp_dir, "flops", f.text_tokens, compare_all=True)  # drawn beside, if profiled
    try:
        analysis = analyze(obs, f.form, f.loss, f.text_tokens, f.bootstrap, candidates=candidates, k=k,
                           ci_level=f.ci_level, cross_validate=f.cross_validate, compare=measured)
    except FitError as e:
        echo(f"fit skipped: {e}")
        return None
    from .rounds import fit_summary

    so_far = [r for r in history or [] if r["round"] < round_no]
    so_far.append({"round": round_no, "fit": fit_summary(analysis, len(obs.e))})
    from .calibrate import chosen_lrs

    run_id = tracker.fit_run(parent, exp.name, round_no)
    tracker.mark_running(run_id)
    out = exp_dir.local / "fit" if exp_dir.remote else exp_dir.fit  # written here, then uploaded
    written = write_report(analysis, out, title=f"{exp.name}: scaling law", rounds=so_far,
                           learning_rates=chosen_lrs(exp_dir),
                           on_figure=lambda name, fig: tracker.client.log_figure(run_id, fig, f"figures/{name}.png"))
    next_yaml = out / "next.yaml"
    from .layout import atomic_write_text

    atomic_write_text(next_yaml, next_spec(exp, yaml.safe_load(spec_text), obs, list(analysis.picks)))
    if exp_dir.remote:
        from workloads.storage import write_bytes_atomic

        for path in [*written, next_yaml]:
            write_bytes_atomic(exp_dir.fit / str(path.relative_to(out)), path.read_bytes())
    echo("\n" + format_analysis(analysis))
    echo(f"report: {exp_dir.fit / 'index.html'}" + (f" (a copy: {out / 'index.html'})" if exp_dir.remote else "")
         + f"\nnext:   vlmscale run {next_yaml}")

    fit = analysis.fit
    metrics = {**fit.params, "objective": fit.objective, "rmse": fit.rmse, "r2": fit.r2, "n_points": fit.n_points}
    metrics.update({f"{k}_ci_low": v[0] for k, v in fit.ci.items()})
    metrics.update({f"{k}_ci_high": v[1] for k, v in fit.ci.items()})
    for name in ("loo_rel_error", "loo_max_rel_error", "holdout_largest_rel_error"):
        if getattr(fit, name) is not None:
            metrics[name] = getattr(fit, name)
    if analysis.frontier.optimal_visual_tokens is not None:
        metrics["optimal_visual_tokens"] = analysis.frontier.optimal_visual_tokens
    tracker.log_metrics(run_id, metrics, step=fit.n_points, dedup="n_points")  # a rerun adds no duplicate point
    tracker.log_params_once(run_id, {"form": fit.form, "loss": fit.loss, "metric": f.metric, "metric_kind": fit.kind,
                                     "bootstrap": f.bootstrap, "ci_level": f.ci_level, "text_tokens": f.text_tokens,
                                     "round": round_no, "cells_per_round": k})
    tracker.set_tags(run_id, {"form": fit.form, "loss": fit.loss, "metric": f.metric, "metric_kind": fit.kind})
    for path in written:
        tracker.client.log_artifact(run_id, str(path), "report")
    tracker.client.log_artifact(run_id, str(next_yaml))
    tracker.finish(run_id)
    return analysis


@dataclass(frozen=True)
class RunOutcome:
    exp_dir: ExperimentDir
    tracking_uri: str
    parent_run_id: str
    finished: list[str]
    errored: dict[str, str]
    skipped: list[str]
    seconds: float


def flat_params(cell: Cell) -> dict[str, Any]:
    out = dict(cell.params())
    for section, values in cell.config.to_dict().items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v
    return out


def tracking_target(exp: Experiment, exp_dir: ExperimentDir) -> tuple[str, str, str | None]:
    """(tracking URI, MLflow experiment name, artifact root) — the local store by default."""
    t = exp.spec.tracking
    # on a cluster the platform ConfigMap sets MLFLOW_TRACKING_URI to the release's server
    server = t.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return server or exp_dir.mlflow_uri, t.experiment_name or exp.name, None if server else exp_dir.artifact_root


def reconcile(tracker, run_ids: dict[str, str], finished: dict[str, dict[str, Any]],
              exp_dir: ExperimentDir) -> None:
    """Bring MLflow up to date with the ledger: a driver killed between a cell's last report and
    its completion callback (or while MLflow was unreachable) left that cell's run unfinished and
    its curves short, and a rerun will not train it again: the progress file fills the curves."""
    for key, record in finished.items():
        run_id = run_ids.get(key)
        if run_id is None or tracker.client.get_run(run_id).info.status == "FINISHED":
            continue
        tracker.log_history(run_id, exp_dir.progress_history(key))
        metrics = record["metrics"]
        tracker.log_metrics(run_id, metrics, int(metrics.get("step", 0)))
        tracker.log_cell_record(run_id, None, record)
        tags = {"vlmscale.status": "finished"}
        if record.get("checkpoint"):
            tags["vlmscale.checkpoint"] = record["checkpoint"]
        if record.get("imported_from"):
            tags["vlmscale.imported_from"] = record["imported_from"]
        tracker.set_tags(run_id, tags)
        tracker.finish(run_id, "FINISHED")


def check_writable(exp_dir: ExperimentDir, probe_bytes: int = 1 << 20) -> None:
    """Refuse to start on storage that cannot take the experiment's state (read-only, full, not
    a directory): one clear line now, rather than a traceback from a worker an hour in."""
    probe = exp_dir.root / f".write-probe-{os.getpid()}"
    if exp_dir.remote:
        try:
            probe.write_bytes(b"\0" * 1024)
            probe.unlink()
        except (OSError, ValueError) as e:  # no bucket, no credentials, no permission
            raise SpecError(f"storage {exp_dir.root.parent} cannot be written ({_storage_error(e)}): check the "
                            "bucket exists and AWS_* credentials (AWS_ENDPOINT_URL for an S3-compatible server) "
                            "are in the environment, or point spec.storage.path/--storage elsewhere") from None
        return
    try:
        exp_dir.root.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * probe_bytes)  # a checkpoint needs room: a nearly full volume fails here
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise SpecError(f"storage {exp_dir.root.parent} cannot be written ({e.strerror or e}): point "
                        "spec.storage.path, --storage or VLMSCALE_STORAGE at a writable volume with free space") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def _storage_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def run_experiment(exp: Experiment, spec_text: str, address: str | None = None, live: bool | None = None,
                   echo=print, rounds: int | None = None, storage: str | None = None) -> RunOutcome:
    """Run (or resume) the experiment: round 1 is the grid; each further round (``rounds``, else
    ``spec.rounds.count``) trains the cells the previous round's fit proposed (see rounds.py).
    ``storage``: the storage root (default: :meth:`Experiment.storage_root`). One driver per
    experiment: a second one refuses (``lock.LockHeld``) while the first is alive."""
    from .lock import lock_for

    t0 = time.time()
    exp_dir = ExperimentDir.of(storage or exp.storage_root(), exp.name)
    check_writable(exp_dir)
    lock = lock_for(exp_dir.root).acquire(f"experiment {exp.name}")  # before anything is written
    try:
        return _run_locked(exp, exp_dir, spec_text, address, live, echo, rounds, t0)
    finally:
        lock.release()


def _run_locked(exp: Experiment, exp_dir: ExperimentDir, spec_text: str, address: str | None, live: bool | None,
                echo, rounds: int | None, t0: float) -> RunOutcome:
    import ray

    from . import track
    from .imports import import_cells
    from .rounds import RoundLog, cells_of_round, fit_summary, round_points, should_stop

    count = rounds or exp.spec.rounds.count
    if count > 1 and not exp.spec.fit.enabled:
        raise SpecError(f"{exp.name}: rounds after the first are proposed by the fit; set spec.fit.enabled: true")
    target = tracking_target(exp, exp_dir)

    def setup():
        grid = prepare(exp, exp_dir, spec_text, echo)
        import_cells(exp, exp_dir, echo)
        finished = exp_dir.finished()  # read once: every ledger record is a file
        tracker = track.Tracker(*target)
        parent = tracker.parent_run(exp.name, exp.digest(), spec_text)
        tracker.mark_running(parent)
        run_ids = {key: tracker.child_run(parent, exp.name, key, record.get("params", {}))
                   for key, record in finished.items()}
        reconcile(tracker, run_ids, finished, exp_dir)
        return grid, set(finished), tracker, parent, run_ids

    # the vision tower's pretraining and MLflow's set-up overlap Ray's start (seconds each)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="vlmscale-setup")
    setting_up = pool.submit(setup)
    try:
        cluster = start_ray(address or os.environ.get("RAY_ADDRESS"))
        grid, before, tracker, parent, run_ids = setting_up.result()
    except BaseException:
        pool.shutdown(wait=True)
        ray.shutdown()
        raise
    pool.shutdown()
    log = RoundLog.load(exp_dir)
    errors: dict[str, Any] = {}
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
    errored = {k: str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
               for k, e in errors.items() if e is not None and k not in finished}
    tracker.log_metrics(parent, {"cells_total": len(planned), "cells_finished": len(finished),
                                 "cells_errored": len(errored)}, step=len(finished), dedup="cells_finished")
    done = not errored and all(c.key in finished for c in planned)
    tracker.finish(parent, "FINISHED" if done else "FAILED")
    return RunOutcome(exp_dir, target[0], parent, sorted(finished), errored, sorted(before), time.time() - t0)


def _train_round(exp: Experiment, exp_dir: ExperimentDir, cells: list[Cell], number: int, tracker, parent: str,
                 run_ids: dict[str, str], target, cluster: dict[str, float], live, echo) -> dict[str, Any]:
    """Train the round's cells that are not finished; every cell gets its MLflow run, tagged with the round."""
    from . import progress, track

    for cell in cells:
        run_ids[cell.key] = tracker.child_run(parent, exp.name, cell.key, flat_params(cell), round_no=number)
    p = plan(exp, cells, exp_dir, cluster)
    for cell in p.todo:  # RUNNING only once its trial starts (the Tune callback marks it)
        tracker.client.update_run(run_ids[cell.key], status="SCHEDULED")
        # reports a driver never delivered (it died while MLflow was away), before the cell resumes
        tracker.log_history(run_ids[cell.key], exp_dir.progress_history(cell.key))
    board = progress.ProgressBoard()
    tc = exp.spec.training
    for cell in cells:
        record = p.finished.get(cell.key)
        board.add(cell.key, tc.steps, tc.batch_size, "finished" if record else "pending", record)
    label = f" round {number}:" if exp.spec.rounds.count > 1 or number > 1 else ""
    echo(f"{exp.name}:{label} {len(cells)} cells, {len(cells) - len(p.todo)} already finished, {len(p.todo)} to run, "
         f"{p.concurrency} at a time; MLflow: {target[0]}")
    if not p.todo:
        return {}
    callbacks = [track.tune_callback(target, run_ids), progress.tune_callback(board, live)]
    return run_grid(exp, exp_dir, p, callbacks)

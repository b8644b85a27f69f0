"""MLflow tracking: one parent run per experiment, one child run per cell, found again by tags.

Runs are looked up by tags before they are created, so a restarted driver, a retried cell or a
resumed cell continues its own run — never a second one. Only the driver process writes (from a
Tune callback), so a sqlite store sees a single writer. Metrics already logged for a step are
not logged again when a cell replays steps after resuming from a checkpoint.
"""

from __future__ import annotations

import math
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .layout import ExperimentDir

TAG_EXPERIMENT = "vlmscale.experiment"
TAG_ROLE = "vlmscale.role"
TAG_CELL = "vlmscale.cell"
TAG_DIGEST = "vlmscale.digest"
TAG_ROUND = "vlmscale.round"
TAG_LLM = "vlmscale.llm"
PARENT_TAG = "mlflow.parentRunId"
PACKAGES = ("vlmscale", "torch", "transformers", "ray", "mlflow", "deepspeed", "numpy", "pydantic")


def environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            env[f"pkg.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[f"pkg.{pkg}"] = "not installed"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=__file__.rsplit("/", 2)[0])
        env["git_sha"] = sha.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git_sha"] = "unknown"
    return env


# keys Ray Tune adds to every result: not metrics of the cell
TUNE_BOOKKEEPING = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "date", "hostname",
    "node_ip", "config", "trial_id", "experiment_tag", "done", "iterations_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "time_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "episodes_this_iter", "timesteps_this_iter", "checkpoint_path", "skipped",
}


class Tracker:
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment_name)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment_name, artifact_location=artifact_root)
        else:
            self.experiment_id = found.experiment_id
        self._last_step: dict[str, int] = {}

    def _find(self, filter_string: str):
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def parent_run(self, name: str, digest: str, spec_text: str) -> str:
        """Get or create the experiment's parent run; the environment and spec are logged once."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'parent' and tags.`{TAG_EXPERIMENT}` = '{name}'")
        if run is not None:
            return run.info.run_id
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={TAG_ROLE: "parent", TAG_EXPERIMENT: name, TAG_DIGEST: digest})
        run_id = run.info.run_id
        from mlflow.entities import Param

        env = environment()
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in env.items()])
        self.client.log_text(run_id, spec_text, "spec.yaml")
        return run_id

    def child_run(self, parent_id: str, name: str, key: str, params: dict[str, Any], round_no: int | None = None) -> str:
        """Get or create a cell's run (found again by its tags); ``round_no`` tags the study round."""
        run = self._find(f"tags.`{TAG_CELL}` = '{key}' and tags.`{TAG_EXPERIMENT}` = '{name}'")
        if run is not None:
            if round_no is not None and run.data.tags.get(TAG_ROUND) is None:
                self.set_tags(run.info.run_id, {TAG_ROUND: str(round_no)})
            return run.info.run_id
        tags = {PARENT_TAG: parent_id, TAG_ROLE: "cell", TAG_CELL: key, TAG_EXPERIMENT: name}
        if round_no is not None:
            tags[TAG_ROUND] = str(round_no)
        run = self.client.create_run(self.experiment_id, run_name=key, tags=tags)
        from mlflow.entities import Param

        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run.info.run_id

    def fit_run(self, parent_id: str, name: str, round_no: int = 1) -> str:
        """Get or create the fit run of a round (one per round of the experiment)."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'fit' and tags.`{TAG_EXPERIMENT}` = '{name}' "
                         f"and tags.`{TAG_ROUND}` = '{round_no}'")
        if run is not None:
            return run.info.run_id
        run_name = f"{name}-fit" if round_no == 1 else f"{name}-fit-round-{round_no}"
        return self.client.create_run(self.experiment_id, run_name=run_name, tags={
            PARENT_TAG: parent_id, TAG_ROLE: "fit", TAG_EXPERIMENT: name, TAG_ROUND: str(round_no)}).info.run_id

    def calibration_run(self, parent_id: str, name: str, llm: str) -> str:
        """Get or create the learning-rate calibration run of one LLM size."""
        run = self._find(f"tags.`{TAG_ROLE}` = 'calibration' and tags.`{TAG_EXPERIMENT}` = '{name}' "
                         f"and tags.`{TAG_LLM}` = '{llm}'")
        if run is not None:
            return run.info.run_id
        return self.client.create_run(self.experiment_id, run_name=f"calibrate-{llm}", tags={
            PARENT_TAG: parent_id, TAG_ROLE: "calibration", TAG_EXPERIMENT: name, TAG_LLM: llm}).info.run_id

    def trial_run(self, calibration_id: str, name: str, llm: str, index: int, params: dict[str, Any]) -> str:
        """A calibration trial's run, a child of its size's calibration run."""
        run = self.client.create_run(self.experiment_id, run_name=f"calibrate-{llm}-trial-{index}", tags={
            PARENT_TAG: calibration_id, TAG_ROLE: "calibration-trial", TAG_EXPERIMENT: name, TAG_LLM: llm})
        from mlflow.entities import Param

        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def last_logged_step(self, run_id: str, metric: str = "loss") -> int:
        if (run_id, metric) not in self._last_step:
            history = self.client.get_metric_history(run_id, metric)
            self._last_step[(run_id, metric)] = max((m.step for m in history), default=-1)
        return self._last_step[(run_id, metric)]

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int, force: bool = False,
                    dedup: str = "loss") -> None:
        """Log numeric metrics at ``step``; a step at or before the last one logged for the
        ``dedup`` metric is skipped (a resumed cell replays reports; a rerun refits)."""
        if not force and step <= self.last_logged_step(run_id, dedup):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_metric_name(k), float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
        for i in range(0, len(batch), 900):  # MLflow's per-request limit is 1000 metrics
            self.client.log_batch(run_id, metrics=batch[i:i + 900])
        self._last_step[(run_id, dedup)] = max(step, self._last_step.get((run_id, dedup), -1))

    def log_params_once(self, run_id: str, params: dict[str, Any]) -> None:
        """Params a run does not have yet (MLflow refuses to change one)."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        if new:
            self.client.log_batch(run_id, params=new)

    def log_cell_record(self, run_id: str, config: dict[str, Any] | None, record: dict[str, Any] | None) -> None:
        """The cell's full config and its checkpoint reference, as the run's artifact cell.json."""
        self.client.log_dict(run_id, {"config": config, "checkpoint": (record or {}).get("checkpoint"),
                                      "imported_from": (record or {}).get("imported_from")}, "cell.json")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def mark_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")


def _metric_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def tune_callback(tracker_args: tuple[str, str, str | None], run_ids: dict[str, str]):
    """A Ray Tune ``Callback`` (runs in the driver) that logs every cell's reports to its child run.

    Built lazily so that importing this module needs no ray; holds only plain data so that Tune
    can pickle it with its run config.
    """
    from ray import tune

    class MlflowCells(tune.Callback):
        def __init__(self):
            self.tracker_args, self.run_ids = tracker_args, dict(run_ids)
            self._tracker: Tracker | None = None

        def __getstate__(self):
            return {"tracker_args": self.tracker_args, "run_ids": self.run_ids, "_tracker": None}

        @property
        def tracker(self) -> Tracker:
            if self._tracker is None:
                self._tracker = Tracker(*self.tracker_args)
            return self._tracker

        def _run(self, trial) -> tuple[str, str]:
            key = trial.config["cell"]["key"]
            return key, self.run_ids[key]

        def on_trial_start(self, iteration, trials, trial, **info):
            _, run_id = self._run(trial)
            self.tracker.mark_running(run_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("skipped"):
                return
            _, run_id = self._run(trial)
            metrics = {k: v for k, v in result.items() if k not in TUNE_BOOKKEEPING}
            if "step" in metrics:
                self.tracker.log_metrics(run_id, metrics, int(metrics["step"]))
            if "checkpoint_path" in result:
                self.tracker.set_tags(run_id, {"vlmscale.checkpoint": result["checkpoint_path"]})

        def on_trial_complete(self, iteration, trials, trial, **info):
            key, run_id = self._run(trial)
            record = ExperimentDir(Path(trial.config["cell"]["exp_dir"])).finished_record(key)
            self.tracker.log_cell_record(run_id, trial.config["cell"]["config"], record)
            self.tracker.set_tags(run_id, {"vlmscale.status": "finished"})
            self.tracker.finish(run_id, "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            _, run_id = self._run(trial)
            self.tracker.set_tags(run_id, {"vlmscale.status": "errored"})
            self.tracker.finish(run_id, "FAILED")

    return MlflowCells()

"""The MLflow side of a running grid: a Ray Tune ``Callback`` (in the driver) that logs every
cell's reports to its child run and ends the run as the cell ended, through a ``Courier`` so the
driver never waits for MLflow."""

from __future__ import annotations

from ..protocols import CellJob, CellStatus, LedgerRecord, TrialReport
from ..protocols.status import MARKERS
from ..store.layout import ExperimentDir
from .courier import Courier
from .tracker import FLUSH_S, Tracker

# keys Ray Tune adds to every result: not metrics of the cell
TUNE_BOOKKEEPING = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "date", "hostname",
    "node_ip", "config", "trial_id", "experiment_tag", "done", "iterations_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "time_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "episodes_this_iter", "timesteps_this_iter", "checkpoint_path",
}


def stopped(trial, exp_dir: ExperimentDir) -> bool:
    """Whether an unfinished trial ended on the run's stop request (it checkpointed, or Tune stopped it
    when the grace period was over, or it never started) rather than on a failure."""
    report = TrialReport.from_result(trial.last_result)
    return report is not None and report.status is CellStatus.INTERRUPTED or exp_dir.stop_request.exists()


def mlflow_callback(tracker_args: tuple[str, str, str | None], run_ids: dict[str, str], text_tokens: float,
                    groups: dict[str, list[str]]):
    """A Ray Tune ``Callback`` (runs in the driver) that logs every cell's reports to its child run,
    through a ``Courier``: the driver never waits for MLflow.

    Built lazily so that importing this module needs no ray; holds only plain data so that Tune
    can pickle it with its run config.
    """
    from ray import tune

    class MlflowCells(tune.Callback):
        def __init__(self):
            self.tracker_args, self.run_ids, self.text_tokens = tracker_args, dict(run_ids), text_tokens
            self.groups, self._courier = dict(groups), None
            self._records: dict[str, LedgerRecord] = {}  # what each finished trial reported

        def __getstate__(self):
            return {**self.__dict__, "_courier": None}

        @property
        def courier(self) -> Courier:
            if self._courier is None:
                self._courier = Courier(lambda: Tracker(*self.tracker_args))
            return self._courier

        def _run(self, trial) -> tuple[str, str]:
            key = CellJob.of_trial(trial.config).key
            return key, self.run_ids[key]

        def on_trial_start(self, iteration, trials, trial, **info):
            _, run_id = self._run(trial)
            self.courier.submit("mark_running", run_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            report = TrialReport.from_result(result)
            if report is not None and report.record is not None:  # finished (now, or before a restart)
                self._records[report.record.key] = report.record
                return
            _, run_id = self._run(trial)
            metrics = {k: v for k, v in result.items() if k not in TUNE_BOOKKEEPING and k not in MARKERS}
            if "step" in metrics:
                self.courier.submit("log_metrics", run_id, metrics, int(metrics["step"]))
            if "checkpoint_path" in result:
                self.courier.submit("set_tags", run_id, {"vlmscale.checkpoint": result["checkpoint_path"]})

        def on_trial_complete(self, iteration, trials, trial, **info):
            key, run_id = self._run(trial)
            job = CellJob.of_trial(trial.config)
            exp_dir = ExperimentDir.at(job.exp_dir)
            record = self._records.pop(key, None)
            if record is None and stopped(trial, exp_dir):
                self.courier.submit("set_tags", run_id, {"vlmscale.status": CellStatus.INTERRUPTED.value})
                self.courier.submit("finish", run_id, "KILLED")
                return
            if record is None:  # the cell ended with a failure that would recur: it reported its cause
                self._failed(run_id, exp_dir.cell_error(key))
                return
            self.courier.submit("log_cell_record", run_id, job.config, record, self.text_tokens,
                                self.groups, str(exp_dir.answers(key)))
            self.courier.submit("set_tags", run_id, {"vlmscale.status": CellStatus.FINISHED.value})
            self.courier.submit("finish", run_id, "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            key, run_id = self._run(trial)
            self._failed(run_id, ExperimentDir.at(CellJob.of_trial(trial.config).exp_dir).cell_error(key))

        def _failed(self, run_id: str, error: dict | None) -> None:
            tags = {"vlmscale.status": CellStatus.ERRORED.value}
            if error:
                tags["vlmscale.error"] = error["cause"][:5000]
            self.courier.submit("set_tags", run_id, tags)
            self.courier.submit("finish", run_id, "FAILED")

        def on_experiment_end(self, trials, **info):
            if self._courier is None:
                return
            left = self._courier.flush(FLUSH_S)
            if left:
                print(f"[vlmscale] MLflow still unreachable after {FLUSH_S:.0f} s: {left} updates not delivered "
                      "(the ledger and progress files hold them; the next `vlmscale run` delivers them)")

    return MlflowCells()

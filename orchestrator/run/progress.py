"""Watching an experiment: a live table (cell, status, step, loss, error, ETA).

``ProgressBoard`` keeps the state; the Tune callback feeds it from the driver and draws it: on a
terminal a rich table that redraws itself (the clock and the ETA tick between reports); elsewhere
(``--plain``: CI logs, ``kubectl logs -f``) one line per cell at every report — step, loss,
samples/s, the cell's ETA and the experiment's — so hours of training are never silent.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..protocols import CellJob, CellStatus, LedgerRecord, TrialReport


@dataclass
class CellProgress:
    key: str
    status: CellStatus = CellStatus.PENDING
    step: int = 0
    steps: int = 0
    loss: float | None = None
    error: float | None = None
    samples_per_s: float | None = None
    batch_size: int = 0
    cause: str | None = None  # why it failed last (one line)

    @property
    def eta_s(self) -> float | None:
        if self.status is not CellStatus.RUNNING or not self.samples_per_s or not self.steps:
            return None
        return (self.steps - self.step) * self.batch_size / self.samples_per_s


@dataclass
class ProgressBoard:
    cells: dict[str, CellProgress] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    cell_rate: float | None = None  # samples/s of one running cell, last measured
    slots: int | None = None  # cells trained at once (the scheduler's concurrency), if known

    def add(self, key: str, steps: int, batch_size: int, record: LedgerRecord | None = None):
        """A cell of the board: finished (with its last numbers) when it has a ledger record, else pending."""
        status = CellStatus.FINISHED if record is not None else CellStatus.PENDING
        c = CellProgress(key, status=status, steps=steps, batch_size=batch_size)
        if record is not None:
            m = record.metrics
            c.step, c.loss, c.error = int(m.get("step", steps)), m.get("loss"), m.get("error")
        self.cells[key] = c

    def update(self, key: str, status: CellStatus | None = None, result: dict[str, Any] | None = None,
               cause: str | None = None) -> None:
        c = self.cells[key]
        if status:
            c.status = CellStatus(status)
        if cause is not None:
            c.cause = cause
        if result:
            c.step = int(result.get("step", c.step))
            c.loss = result.get("loss", c.loss)
            c.error = result.get("error", c.error)
            c.samples_per_s = result.get("samples_per_s", c.samples_per_s)

    def eta_s(self) -> float | None:
        """Seconds left for the whole experiment: the samples still to train over the throughput of
        the cells that will train at once — the scheduler's slots, or fewer when fewer cells are
        left — each at the mean rate of the running cells (between reports, of the last that
        reported). Counting slots rather than the cells running right now keeps the estimate from
        jumping in the moment between one cell's end and the next one's start. None before the
        first report."""
        running = [c for c in self.cells.values() if c.status is CellStatus.RUNNING]
        rates = [c.samples_per_s for c in running if c.samples_per_s]
        if rates:
            self.cell_rate = sum(rates) / len(rates)
        if not self.cell_rate:
            return None
        todo = [c for c in self.cells.values() if c.status in (CellStatus.RUNNING, CellStatus.PENDING, CellStatus.RETRYING)]
        left = sum((c.steps - c.step) * c.batch_size for c in todo)
        parallel = min(self.slots, len(todo)) if self.slots else len(running)
        return left / (self.cell_rate * max(parallel, 1))

    def summary(self) -> str:
        done = sum(c.status.done for c in self.cells.values())
        eta = self.eta_s()
        return (f"{done}/{len(self.cells)} cells done, {_duration(time.time() - self.started)} elapsed"
                + (f", about {_duration(eta)} left" if eta is not None else ""))

    def table(self):
        from rich.table import Table

        t = Table(title=f"vlmscale — {self.summary()}")
        for col in ("cell", "status", "step", "loss", "error", "ETA"):
            t.add_column(col, justify="left" if col in ("cell", "status") else "right")
        style = {CellStatus.FINISHED: "green", CellStatus.RUNNING: "cyan", CellStatus.ERRORED: "red",
                 CellStatus.SKIPPED: "green dim", CellStatus.INTERRUPTED: "yellow"}
        for c in self.cells.values():
            status = f"[{style.get(c.status, '')}]{c.status}[/]" if c.status in style else c.status
            if c.cause and c.status in (CellStatus.ERRORED, CellStatus.RETRYING):
                status += f" ({c.cause[:60]})"
            t.add_row(c.key, status, f"{c.step}/{c.steps}", _fmt(c.loss), _fmt(c.error),
                      f"{c.eta_s:.0f} s" if c.eta_s is not None else "")
        return t


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plain_line(c: CellProgress, board: ProgressBoard) -> str:
    """One log line about a cell (``--plain``)."""
    parts = [f"[vlmscale] {c.key}: {c.status} step {c.step}/{c.steps}"]
    if c.loss is not None and c.status in (CellStatus.RUNNING, CellStatus.RETRYING):
        parts.append(f"loss {c.loss:.4f}")
    if c.samples_per_s and c.status is CellStatus.RUNNING:
        parts.append(f"{c.samples_per_s:.1f} samples/s")
    if c.eta_s is not None:
        parts.append(f"ETA {_duration(c.eta_s)}")
    if c.error is not None and c.status is CellStatus.FINISHED:
        parts.append(f"error {c.error:.4f}")
    if c.cause and c.status in (CellStatus.ERRORED, CellStatus.RETRYING):
        parts.append(c.cause)
    return " · ".join(parts) + f"  ({board.summary()})"


def _cause(trial) -> str | None:
    """The cell's last failure, as the trial function recorded it."""
    from ..store.layout import ExperimentDir

    job = CellJob.of_trial(trial.config)
    error = ExperimentDir.at(job.exp_dir).cell_error(job.key)
    return error["cause"] if error else None


def progress_callback(board: ProgressBoard, live: bool | None = None):
    """A Ray Tune ``Callback`` updating ``board`` and redrawing it (rich Live on a TTY)."""
    from ray import tune
    from rich.console import Console
    from rich.live import Live

    class Progress(tune.Callback):
        def __init__(self):
            self.board = board
            self.console = Console()
            self.live_enabled = sys.stdout.isatty() if live is None else live
            self._live = None

        def __getstate__(self):  # Tune pickles its callbacks; a live console does not travel
            return {"board": self.board, "live_enabled": False, "_live": None, "console": None}

        def _draw(self):
            if self.live_enabled:
                if self._live is None:  # redraws itself: the clock and the ETA tick between reports
                    self._live = Live(get_renderable=self.board.table, console=self.console, refresh_per_second=2)
                    self._live.start()
                self._live.refresh()

        def _line(self, key: str):
            if not self.live_enabled:
                print(plain_line(self.board.cells[key], self.board), flush=True)

        def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
            self._draw()  # the table from the first second, not from the first trial's start

        def on_trial_start(self, iteration, trials, trial, **info):
            key = CellJob.of_trial(trial.config).key
            self.board.update(key, CellStatus.RUNNING)
            self._line(key)
            self._draw()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = CellJob.of_trial(trial.config).key
            report = TrialReport.from_result(result)
            if report is not None and report.status is not CellStatus.SKIPPED:
                # a failure that would recur (the cell ends here, with its cause), or the run stopping
                self.board.update(key, report.status, cause=report.cause)
                return
            skipped = report is not None
            self.board.update(key, CellStatus.SKIPPED if skipped else None, result)
            if not skipped and not result.get("final"):
                self._line(key)  # every report: training is visible in logs
            self._draw()

        def on_trial_complete(self, iteration, trials, trial, **info):
            key = CellJob.of_trial(trial.config).key
            if not self.board.cells[key].status.settled:
                from ..store.layout import ExperimentDir

                # ended without its report of a result: stopped, or a failure the error callback names
                stopped = ExperimentDir.at(CellJob.of_trial(trial.config).exp_dir).stop_request.exists()
                self.board.update(key, CellStatus.INTERRUPTED if stopped else CellStatus.FINISHED)
            self._line(key)
            self._draw()

        def on_trial_recover(self, iteration, trials, trial, **info):
            key = CellJob.of_trial(trial.config).key
            self.board.update(key, CellStatus.RETRYING, cause=_cause(trial))
            self._line(key)
            self._draw()

        def on_trial_error(self, iteration, trials, trial, **info):
            key = CellJob.of_trial(trial.config).key
            self.board.update(key, CellStatus.ERRORED, cause=_cause(trial))
            self._line(key)
            self._draw()

        def on_experiment_end(self, trials, **info):
            if self._live is not None:
                self._live.refresh()
                self._live.stop()
                self._live = None

    return Progress()

"""Watching an experiment: a live table (cell, status, step, loss, error, ETA).

``ProgressBoard`` keeps the state; the Tune callback feeds it from the driver; ``render`` draws it
with rich, live on a terminal and as plain status lines elsewhere (CI logs, ``kubectl logs``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CellProgress:
    key: str
    status: str = "pending"
    step: int = 0
    steps: int = 0
    loss: float | None = None
    error: float | None = None
    samples_per_s: float | None = None
    batch_size: int = 0

    @property
    def eta_s(self) -> float | None:
        if self.status != "running" or not self.samples_per_s or not self.steps:
            return None
        return (self.steps - self.step) * self.batch_size / self.samples_per_s


@dataclass
class ProgressBoard:
    cells: dict[str, CellProgress] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, key: str, steps: int, batch_size: int, status: str = "pending", record: dict | None = None):
        c = CellProgress(key, status=status, steps=steps, batch_size=batch_size)
        if record:
            m = record.get("metrics", {})
            c.step, c.loss, c.error = int(m.get("step", steps)), m.get("loss"), m.get("error")
        self.cells[key] = c

    def update(self, key: str, status: str | None = None, result: dict[str, Any] | None = None) -> None:
        c = self.cells[key]
        if status:
            c.status = status
        if result:
            c.step = int(result.get("step", c.step))
            c.loss = result.get("loss", c.loss)
            c.error = result.get("error", c.error)
            c.samples_per_s = result.get("samples_per_s", c.samples_per_s)

    def table(self):
        from rich.table import Table

        t = Table(title=f"vlmscale — {len(self.cells)} cells, {time.time() - self.started:.0f} s")
        for col in ("cell", "status", "step", "loss", "error", "ETA"):
            t.add_column(col, justify="left" if col in ("cell", "status") else "right")
        style = {"finished": "green", "running": "cyan", "errored": "red", "skipped": "green dim"}
        for c in self.cells.values():
            t.add_row(c.key, f"[{style.get(c.status, '')}]{c.status}[/]" if c.status in style else c.status,
                      f"{c.step}/{c.steps}", _fmt(c.loss), _fmt(c.error),
                      f"{c.eta_s:.0f} s" if c.eta_s is not None else "")
        return t


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def tune_callback(board: ProgressBoard, live: bool | None = None):
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
                if self._live is None:
                    self._live = Live(self.board.table(), console=self.console, refresh_per_second=2)
                    self._live.start()
                self._live.update(self.board.table())

        def _line(self, key: str):
            if not self.live_enabled:
                c = self.board.cells[key]
                extra = f" error={c.error:.4f}" if c.error is not None and c.status == "finished" else ""
                print(f"[vlmscale] {key}: {c.status} (step {c.step}/{c.steps}){extra}", flush=True)

        def on_trial_start(self, iteration, trials, trial, **info):
            key = trial.config["cell"]["key"]
            self.board.update(key, "running")
            self._line(key)
            self._draw()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = trial.config["cell"]["key"]
            self.board.update(key, "skipped" if result.get("skipped") else None, result)
            self._draw()

        def on_trial_complete(self, iteration, trials, trial, **info):
            key = trial.config["cell"]["key"]
            if self.board.cells[key].status != "skipped":
                self.board.update(key, "finished")
            self._line(key)
            self._draw()

        def on_trial_recover(self, iteration, trials, trial, **info):
            key = trial.config["cell"]["key"]
            self.board.update(key, "retrying")
            self._line(key)
            self._draw()

        def on_trial_error(self, iteration, trials, trial, **info):
            key = trial.config["cell"]["key"]
            self.board.update(key, "errored")
            self._line(key)
            self._draw()

        def on_experiment_end(self, trials, **info):
            if self._live is not None:
                self._live.update(self.board.table())
                self._live.stop()
                self._live = None

    return Progress()

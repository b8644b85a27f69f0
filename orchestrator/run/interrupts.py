"""SIGINT and SIGTERM during `vlmscale run`: stop honestly.

The first signal stops the scheduling of new cells and asks the running ones to checkpoint: a stop
request appears in the experiment's storage (``<experiment>/stop``), which every cell reads at its
next log step, checkpoints, and ends. After ``failure.grace_seconds`` (Kubernetes waits 30 s
between SIGTERM and SIGKILL) Ray Tune stops whatever is still running. The driver then marks the
unfinished MLflow runs KILLED, releases its lock and exits 130 (SIGINT) or 143 (SIGTERM) with one
line — never with a fit, a report or proposals made from a partial grid. A second SIGINT skips the
grace period.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from ..store.layout import ExperimentDir


class Interrupted(Exception):
    """The run stopped on a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class Interrupt:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, exp_dir: ExperimentDir, grace_s: float, echo=print):
        self.exp_dir, self.grace_s, self.echo = exp_dir, grace_s, echo
        self.signum: int | None = None
        self.at: float | None = None
        self.forced = False
        self._saved: dict[int, Any] = {}  # each signal's handler before ours

    def __getstate__(self):  # travels inside Tune's pickled stopper: plain data only
        return {"exp_dir": self.exp_dir, "grace_s": self.grace_s, "signum": self.signum, "at": self.at,
                "forced": self.forced, "echo": print, "_saved": {}}

    def __enter__(self) -> Interrupt:
        import os

        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # this handler, not Tune's, decides what SIGINT does
        self.clear_request()  # a request left by a run that died must not stop this one
        self.install()
        return self

    def install(self) -> None:
        """Answer SIGINT and SIGTERM here. Called again after ``ray.init``: Ray's core worker puts its
        own SIGTERM handler in place (it aborts the process with a C++ stack dump, exit −6)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._saved.setdefault(sig, previous)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self.clear_request()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            self.forced = True  # a second signal: no more grace
            return
        self.signum, self.at = signum, time.time()
        try:
            self.exp_dir.stop_request.write_text(f"{signal.Signals(signum).name} at {self.at}\n")
        except OSError:
            pass  # storage gone: Tune's stop still comes after the grace period
        self.echo(f"[vlmscale] {signal.Signals(signum).name}: no new cells; running cells checkpoint and stop "
                  f"(up to {self.grace_s:g} s)")

    def clear_request(self) -> None:
        try:
            self.exp_dir.stop_request.unlink()
        except (FileNotFoundError, OSError):
            pass

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def stop_now(self) -> bool:
        """Whether Tune should stop every trial now: asked, and the grace period is over (or forced)."""
        return self.requested and (self.forced or time.time() - (self.at or 0.0) >= self.grace_s)

    def check(self, finished: int, total: int | None, during: str = "") -> None:
        """Raise :class:`Interrupted` if a signal came (call at points where stopping is safe)."""
        if self.signum is None:
            return
        name = signal.Signals(self.signum).name
        where = f" during {during}" if during else ""
        of = f" of {total}" if total else ""
        raise Interrupted(self.signum, f"interrupted by {name}{where}: {finished}{of} cells finished, the "
                                       "others kept their checkpoints; run the same command again to resume")


def tune_search(interrupt: Interrupt, max_concurrent: int):
    """Tune's grid, its trials made one at a time as slots free (``max_concurrent``), and none once a
    stop is asked: no new cell starts after the first signal (a running one checkpoints and ends).
    It reads the stop request from storage, as a trial does: Tune may hold a copy of it."""
    from pathlib import Path

    from ray.tune.search import BasicVariantGenerator

    stop = str(interrupt.exp_dir.stop_request)

    class GridUntilStopped(BasicVariantGenerator):
        def is_finished(self) -> bool:
            return super().is_finished() or Path(stop).exists()

    return GridUntilStopped(max_concurrent=max_concurrent)


def tune_stopper(interrupt: Interrupt):
    """A Ray Tune ``Stopper`` that ends the experiment when the interrupt's grace period is over."""
    from ray import tune

    class GracefulStop(tune.Stopper):
        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.stop_now()

        def __getstate__(self):  # Tune keeps its stopper in the experiment state: nothing to restore
            return {}

    return GracefulStop()

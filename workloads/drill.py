"""Fault drills: a cell that crashes once, to prove that crash recovery is bit-exact.

The drill wraps the cell's :class:`~workloads.session.Session` (the one hook the training loop
knows nothing about): reports pass through until the drill's moment, then the worker raises
:class:`InjectedFault` — and a run that resumed from a checkpoint is never drilled again.

* ``during: step`` — at the first report after ``step``, before it is delivered: everything
  reported up to ``step`` (checkpoints included) was published, nothing after it, exactly as if
  the worker had died at ``step``.
* ``during: checkpoint`` — the checkpoint of ``step`` is published with its largest file cut in
  half (its seal still lists the full size), then the worker dies: the resume must find it
  incomplete and take the one before.
"""

from __future__ import annotations

from pathlib import Path

from .config import FaultConfig


class InjectedFault(RuntimeError):
    """Raised by a fault drill (``CellConfig.fault``; the spec's ``fault_injection``)."""


class DrilledSession:
    """A session whose reports crash the worker once, as ``fault`` says."""

    def __init__(self, session, fault: FaultConfig):
        self._session, self.fault = session, fault
        self.rank, self.world_size, self.device = session.rank, session.world_size, session.device

    def restore_dir(self):
        return self._session.restore_dir()

    def stop_requested(self) -> bool:
        return self._session.stop_requested()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        step = int(metrics["step"])
        if self.fault.during == "step" and step > self.fault.step:
            raise InjectedFault(f"injected fault at step {self.fault.step} (fault drill)")
        cut = self.fault.during == "checkpoint" and checkpoint_dir is not None and step == self.fault.step
        if cut:
            assert checkpoint_dir is not None
            victim = max((p for p in Path(checkpoint_dir).rglob("*.pt")), key=lambda p: p.stat().st_size)
            with open(victim, "r+b") as f:
                f.truncate(victim.stat().st_size // 2)
        self._session.report(metrics, checkpoint_dir)
        if cut:
            raise InjectedFault(f"injected fault while checkpointing step {step} (fault drill)")


def drilled(session, fault: FaultConfig | None, resumed: bool):
    """``session`` itself, or wrapped in the drill when there is one and the run did not resume."""
    return session if fault is None or resumed else DrilledSession(session, fault)

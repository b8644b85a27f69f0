"""A cell's status, and how a trial that did not train to the end says why.

A trial reports its final metrics when it trained; otherwise one ``TrialReport``: skipped (its
result was already in the ledger), interrupted (the run is stopping; it checkpointed), or an error
that would recur (with its cause and log). The progress board, the MLflow callback and the grid's
summary read the same report back with :meth:`TrialReport.from_result`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_SKIPPED, _INTERRUPTED, _ERROR, _LOG = "skipped", "cell_interrupted", "cell_error", "cell_log"
# what a trial's result may hold beyond the cell's own metrics (the MLflow callback leaves them out)
MARKERS = (_SKIPPED, _ERROR, _LOG, _INTERRUPTED)


class CellStatus(StrEnum):
    """Where a cell stands. A str: tables, JSON and MLflow tags show the value as it is."""

    PENDING = "pending"
    STARTED = "started"  # it has progress on storage but no trial of this run yet
    RUNNING = "running"
    RETRYING = "retrying"
    FINISHED = "finished"
    SKIPPED = "skipped"  # finished before this run: nothing trained
    ERRORED = "errored"
    INTERRUPTED = "interrupted"

    @property
    def done(self) -> bool:
        return self in (CellStatus.FINISHED, CellStatus.SKIPPED)

    @property
    def settled(self) -> bool:
        """No later report of this run changes it."""
        return self in (CellStatus.SKIPPED, CellStatus.ERRORED, CellStatus.INTERRUPTED)


@dataclass(frozen=True)
class TrialReport:
    """How a trial ended without training to the end (``status``), or None for a trained cell."""

    status: CellStatus
    cause: str | None = None
    log: str | None = None

    @classmethod
    def skipped(cls) -> TrialReport:
        return cls(CellStatus.SKIPPED)

    @classmethod
    def interrupted(cls) -> TrialReport:
        return cls(CellStatus.INTERRUPTED)

    @classmethod
    def error(cls, cause: str, log: str) -> TrialReport:
        return cls(CellStatus.ERRORED, cause, log)

    def to_result(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the trial hands ``tune.report`` (a skipped cell's finished metrics beside it)."""
        if self.status is CellStatus.SKIPPED:
            return {**(metrics or {}), _SKIPPED: 1}
        if self.status is CellStatus.INTERRUPTED:
            return {_INTERRUPTED: 1}
        return {_ERROR: self.cause, _LOG: self.log}

    @classmethod
    def from_result(cls, result: dict[str, Any] | None) -> TrialReport | None:
        r = result or {}
        if r.get(_ERROR):
            return cls(CellStatus.ERRORED, r[_ERROR], r.get(_LOG))
        if r.get(_INTERRUPTED):
            return cls(CellStatus.INTERRUPTED)
        if r.get(_SKIPPED):
            return cls(CellStatus.SKIPPED)
        return None

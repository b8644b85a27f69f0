"""A cell's status, and how a trial says how it ended.

A trial's last report is one ``TrialReport``: finished (with the ledger record it wrote), skipped
(its record was already in the ledger; the record again), interrupted (the run is stopping; it
checkpointed), or an error that would recur (with its cause and log). The progress board, the
MLflow callback and the grid's summary read the same report back with
:meth:`TrialReport.from_result`, so the driver logs a finished cell from what its trial reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .ledger import LedgerRecord

_SKIPPED, _INTERRUPTED, _ERROR, _LOG, _RECORD = "skipped", "cell_interrupted", "cell_error", "cell_log", "cell_record"
# what a trial's result may hold beyond the cell's own metrics (the MLflow callback leaves them out)
MARKERS = (_SKIPPED, _ERROR, _LOG, _INTERRUPTED, _RECORD)


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
        return self in (CellStatus.FINISHED, CellStatus.SKIPPED, CellStatus.ERRORED, CellStatus.INTERRUPTED)


@dataclass(frozen=True)
class TrialReport:
    """How a trial ended (``status``): a finished or skipped cell with its ledger ``record``, an
    error with its ``cause`` and ``log``, or interrupted."""

    status: CellStatus
    cause: str | None = None
    log: str | None = None
    record: LedgerRecord | None = None

    @classmethod
    def finished(cls, record: LedgerRecord) -> TrialReport:
        return cls(CellStatus.FINISHED, record=record)

    @classmethod
    def skipped(cls, record: LedgerRecord) -> TrialReport:
        return cls(CellStatus.SKIPPED, record=record)

    @classmethod
    def interrupted(cls) -> TrialReport:
        return cls(CellStatus.INTERRUPTED)

    @classmethod
    def error(cls, cause: str, log: str) -> TrialReport:
        return cls(CellStatus.ERRORED, cause, log)

    def to_result(self) -> dict[str, Any]:
        """What the trial hands ``tune.report``: a skipped cell's metrics beside its record, as the
        board shows them."""
        if self.record is not None:
            skipped = self.status is CellStatus.SKIPPED
            return {**(self.record.metrics if skipped else {}), _SKIPPED: int(skipped), _RECORD: self.record.to_dict()}
        if self.status is CellStatus.INTERRUPTED:
            return {_INTERRUPTED: 1}
        return {_ERROR: self.cause, _LOG: self.log}

    @classmethod
    def from_result(cls, result: dict[str, Any] | None) -> TrialReport | None:
        """The report a result holds; None for a report of training progress."""
        r = result or {}
        if r.get(_ERROR):
            return cls(CellStatus.ERRORED, r[_ERROR], r.get(_LOG))
        if r.get(_INTERRUPTED):
            return cls(CellStatus.INTERRUPTED)
        if isinstance(r.get(_RECORD), dict):
            record = LedgerRecord.from_dict(r[_RECORD])
            return cls(CellStatus.SKIPPED if r.get(_SKIPPED) else CellStatus.FINISHED, record=record)
        return None

"""The typed contracts where orchestrator's packages meet: a finished cell's ledger record, the job a
Tune trial trains, what a trial reports about how it ended, and a cell's status.

Pure dataclasses and enums (no ray, torch or mlflow): ``store`` writes and reads ledger records,
``run`` builds cell jobs and trial reports, ``tracking`` and the progress board read them back.
Each stored or serialised form goes through its ``to_dict``/``from_dict`` here and nowhere else.
"""

from .cell_job import CellJob, WorkerSlots
from .ledger import LEDGER_VERSION, LedgerRecord, ledger_problem
from .status import CellStatus, TrialReport

__all__ = ["CellJob", "CellStatus", "LEDGER_VERSION", "LedgerRecord", "TrialReport", "WorkerSlots", "ledger_problem"]

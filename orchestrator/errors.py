"""The one family of errors for bad input: whatever the user must change — a spec, an option, a
file, a table, the storage, a running driver — is a :class:`BadInput`, reported by the command
line as one line and exit code 2 (no traceback).

A leaf: imports nothing, so every layer (the spec, the scaling-law engine, the runtime) raises
from the same family without importing each other.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """One clear line: what is wrong (naming the field, file or option) and what to do."""


class SpecError(BadInput):
    """The experiment spec: a field, the file, or a change to a spec that already ran."""


class UsageError(BadInput):
    """A command-line option or argument."""


class TableError(BadInput):
    """A table of runs (CSV, Parquet), a column, a cost expression or a budget given with it."""


class StorageError(BadInput):
    """Where the experiment lives: storage that cannot be written, or holds no such experiment."""


class ServiceError(BadInput):
    """A service the experiment needs (its MLflow server) cannot be reached where it is configured."""


class StateError(BadInput):
    """A state file of an experiment (its ledger, manifest, round log, calibration) is damaged."""

"""Why a cell failed, and whether trying again can help.

A failure that will recur — a missing file, a bad config, a shape mismatch, out of memory at the
same batch size, any error in the cell's own code — is not retried: the cell ends at once, with
its cause. Retries are for faults that may pass: a lost worker, process or node, a preemption, a
collective or connection timeout (and the fault drills, which simulate those). When several ranks
failed, the cell is transient only if every one of them failed transiently: a rank that raised a
ValueError takes its peers down with timeouts, and the ValueError is the cause.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from functools import cache


class DataError(ValueError):
    """A defect in a data file the cell reads (a record, an image, a benchmark line): it will recur
    for every cell that reads ``path``, so the run ends their attempts at it early."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)

    def __reduce__(self):  # through Ray's workers with its file
        return type(self), (str(self), self.path)


def data_file(e: BaseException) -> str | None:
    """The file whose defect ``e`` is (on any rank), or None."""
    return next((c.path for c in root_causes(e) if isinstance(c, DataError) and c.path), None)


class CellInterrupted(RuntimeError):
    """The run was asked to stop (SIGINT, SIGTERM): the cell checkpointed at this step and ended; a
    rerun resumes it. Neither a failure nor retried."""


def interrupted(e: BaseException) -> bool:
    """Whether ``e`` (through Ray's wrappers, on any rank) is a cell that stopped on request."""
    return any(isinstance(c, CellInterrupted) for c in root_causes(e))


@cache
def _transient_types() -> tuple[type, ...]:
    """Exception types that name a fault outside the cell's own work."""
    found: list[type] = [ConnectionError, TimeoutError]
    from .drill import InjectedFault

    found.append(InjectedFault)
    for module, names in (
            ("ray.exceptions", ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                "OwnerDiedError", "RaySystemError", "ActorUnavailableError", "LocalRayletDiedError",
                                "ObjectFetchTimedOutError", "GetTimeoutError")),
            ("ray.train.v2.api.exceptions", ("PreemptionError", "NCCLHangError")),
            ("torch.distributed", ("DistBackendError", "DistNetworkError", "DistStoreError")),
            ("botocore.exceptions", ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError"))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found)


def root_causes(e: BaseException) -> list[BaseException]:
    """The exceptions at the bottom of ``e``: through Ray's task wrappers, a worker group's
    per-rank failures and a controller's failure (each rank once, in rank order)."""
    ranks = getattr(e, "worker_failures", None)
    if isinstance(ranks, dict) and ranks:
        return [c for _, f in sorted(ranks.items()) for c in root_causes(f)]
    inner = getattr(e, "controller_failure", None) or getattr(e, "cause", None)
    if isinstance(inner, BaseException) and inner is not e:
        return root_causes(inner)
    return [e]


def is_transient(e: BaseException) -> bool:
    causes = root_causes(e)
    transient = _transient_types()
    return all(isinstance(c, transient) for c in causes)


CAUSE_CHARS = 500


def cause_line(e: BaseException) -> str:
    """The most telling cause — a non-transient one if any (it brought the rest down) — in one line:
    every line of its message (the one that says why is often not the first), and the exception it
    was raised from where that adds something."""
    causes = root_causes(e)
    transient = _transient_types()
    chosen = next((c for c in causes if not isinstance(c, transient)), causes[0])
    text = " | ".join(line.strip() for line in str(chosen).splitlines() if line.strip())
    under = chosen.__cause__ or (None if chosen.__suppress_context__ else chosen.__context__)
    if under is not None and str(under).strip() and str(under).strip().splitlines()[0] not in text:
        text += f" (from {type(under).__name__}: {str(under).strip().splitlines()[0]})"
    line = f"{type(chosen).__name__}: {text}" if text else type(chosen).__name__
    return line if len(line) <= CAUSE_CHARS else line[:CAUSE_CHARS - 1] + "…"


@dataclass(frozen=True)
class Failure:
    cause: str  # one line
    transient: bool
    details: str  # every traceback, for the cell's log file


def describe(e: BaseException) -> Failure:
    causes = root_causes(e)
    details = "\n".join("".join(traceback.format_exception(c)) for c in ([e] if causes == [e] else [e, *causes]))
    return Failure(cause_line(e), is_transient(e), details)

"""What a Tune trial trains: one cell of the study, with where its experiment lives and how it
runs. It crosses Tune as ``to_dict()`` (Tune keeps trial configs as plain data) and is read back
with ``from_dict`` in the trial, the callbacks and the trial's name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CONFIG_KEY = "cell"  # the Tune param-space key the job travels under


@dataclass(frozen=True)
class WorkerSlots:
    """The Ray resources of each of a cell's workers."""

    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float


@dataclass(frozen=True)
class CellJob:
    """One cell to train. ``config`` is the cell's ``CellConfig.to_dict()`` (workloads reads it);
    ``params``/``settings``/``config_digest`` go into its ledger record as they are."""

    key: str
    params: dict[str, Any]
    config: dict[str, Any]
    config_digest: str
    settings: dict[str, Any]
    exp_dir: str
    resources: WorkerSlots
    retries: int
    in_trial: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CellJob:
        return cls(**{**doc, "resources": WorkerSlots(**doc["resources"])})

    @classmethod
    def of_trial(cls, trial_config: dict[str, Any]) -> CellJob:
        """The job a Tune trial's config carries."""
        return cls.from_dict(trial_config[CONFIG_KEY])

"""A finished cell's ledger record (``<experiment>/results/<key>.json``): what it measured, the
settings that produced it, where its last checkpoint is.

Stored as JSON with a ``version``; records written before versions existed read as version 1.
A record that fails its check is named with what is wrong, so storage damage is one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

LEDGER_VERSION = 1


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def ledger_problem(doc: Any) -> str | None:
    """What is wrong with a stored record, or None: its metrics (error and LLM size numbers), its
    params and settings objects, its digest (an imported record has its origin instead)."""
    if not isinstance(doc, dict):
        return "not a record (a JSON object)"
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return "version is not a positive integer"
    if version > LEDGER_VERSION:
        return f"version {version} is newer than this vlmscale reads ({LEDGER_VERSION}): upgrade vlmscale"
    m = doc.get("metrics")
    if not isinstance(m, dict):
        return "no metrics"
    for k in ("error", "llm_params"):
        if not _number(m.get(k)):
            return f"metrics.{k} is not a number"
    if "params" in doc and not isinstance(doc["params"], dict):
        return "params is not an object"
    if not doc.get("imported_from") and not isinstance(doc.get("config_digest"), str):
        return "no config_digest"
    if "settings" in doc and not isinstance(doc["settings"], dict):
        return "settings is not an object"
    return None


@dataclass(frozen=True)
class LedgerRecord:
    """One finished cell. ``metrics`` holds at least ``error`` and ``llm_params``; ``params`` the
    grid point (llm, visual_tokens, compressor, task, seed); ``settings`` every setting of its
    digest by name; ``imported_from`` where an imported record came from (it has no digest)."""

    key: str
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    config_digest: str | None = None
    checkpoint: str | None = None
    finished_at: float | None = None
    imported_from: str | None = None
    rescored_at: float | None = None

    @property
    def step(self) -> int:
        return int(self.metrics.get("step", 0))

    def counts_for(self, digest: str) -> bool:
        """Whether this record is the result of a cell whose settings digest is ``digest``: made
        under the same settings, or imported (imports are checked against the spec on import)."""
        return bool(self.imported_from) or self.config_digest == digest

    def mlflow_params(self) -> dict[str, Any]:
        """The cell's params as its MLflow run holds them (grid point and settings by name)."""
        return {**self.params, **self.settings}

    def imported(self, origin: str) -> LedgerRecord:
        """This record as another experiment imports it (a re-import keeps its first origin)."""
        return replace(self, imported_from=self.imported_from or origin)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": LEDGER_VERSION, "key": self.key, "params": self.params}
        if self.config_digest is not None:
            doc["config_digest"] = self.config_digest
        doc["settings"] = self.settings
        doc["metrics"] = self.metrics
        for name in ("checkpoint", "finished_at", "imported_from", "rescored_at"):
            value = getattr(self, name)
            if value is not None or name == "checkpoint" and self.config_digest is not None:
                doc[name] = value
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], key: str | None = None) -> LedgerRecord:
        """A checked record (``ledger_problem`` first: a ValueError names what is wrong); ``key``
        where an old record does not hold its own."""
        problem = ledger_problem(doc)
        if problem is not None:
            raise ValueError(problem)
        return cls(key=str(doc.get("key") or key or ""), metrics=dict(doc["metrics"]),
                   params=dict(doc.get("params") or {}), settings=dict(doc.get("settings") or {}),
                   config_digest=doc.get("config_digest"), checkpoint=doc.get("checkpoint"),
                   finished_at=doc.get("finished_at"), imported_from=doc.get("imported_from"),
                   rescored_at=doc.get("rescored_at"))

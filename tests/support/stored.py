"""Where a stored experiment keeps what tests compare against."""

from __future__ import annotations

from pathlib import Path


def stored_tower(spec: dict, exp_dir: "Path | str") -> str | None:
    """The stored experiment's pretrained tower (one directory per pretraining settings), local or s3://."""
    from orchestrator.plan.cells import tower_dir
    from orchestrator.spec import parse
    from orchestrator.store.layout import ExperimentDir

    return tower_dir(parse(spec), ExperimentDir.at(str(exp_dir)))

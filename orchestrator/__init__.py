"""vlmscale's orchestrator: experiment spec → Ray Tune grid of Ray Train jobs → MLflow → the law.

The public facade. Heavy parts load on first use, so importing the package (and running
``vlmscale validate``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .spec import Experiment, SpecError, json_schema, load, parse

_LAZY = {
    "Fit": "fit", "FitError": "fit", "fit_law": "fit", "predict": "fit", "FORMS": "fit",
    "Frontier": "frontier", "frontier": "frontier", "closed_form_visual_tokens": "frontier",
    "propose_frontier": "propose", "Candidate": "propose",
    "analyze": "analyze", "write_report": "report",
    "run_experiment": "schedule", "render": "render", "submit": "submit",
}

__all__ = ["Experiment", "SpecError", "json_schema", "load", "parse", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

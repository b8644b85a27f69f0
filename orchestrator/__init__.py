"""vlmscale's orchestrator: experiment spec → Ray Tune grid of cells → MLflow → the law.

The public facade. Everything but the error family loads on first use, so importing a part
(the scaling-law engine, say) loads that part only, and ``vlmscale validate`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import BadInput, SpecError

_LAZY = {
    "Experiment": "spec", "json_schema": "spec", "load": "spec", "parse": "spec",
    "Fit": "scaling.fit", "fit_law": "scaling.fit",
    "FitError": "scaling.forms", "predict": "scaling.forms", "FORMS": "scaling.forms",
    "closed_form_visual_tokens": "scaling.forms", "COST_MODELS": "scaling.cost",
    "Frontier": "scaling.frontier", "frontier": "scaling.frontier",
    "propose_frontier": "scaling.design", "Candidate": "scaling.design",
    "analyze": "scaling.analysis", "write_report": "scaling.report",
    "run_experiment": "run.driver", "render": "kube.render", "submit": "kube.submit",
}

__all__ = ["BadInput", "SpecError", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

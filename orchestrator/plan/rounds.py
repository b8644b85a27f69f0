"""Studies in rounds: the grid is round 1; after each round the law is refitted and the cells it
most wants next become the following round.

The state lives in ``<experiment>/rounds.json`` (atomic writes): every round's cells, written
*before* any of them trains, and each round's fit summary once it is fitted. So a driver killed
anywhere resumes where it was — a proposed round is never proposed again, a finished cell never
trained again — and the report can show how the frontier's interval narrowed round by round.
Each proposed cell carries the law's forecast for it (orchestrator/scaling/forecast.py), written
before it trains; once the round is fitted, its fit summary holds the check of those forecasts.
Pure: no ray, torch or mlflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..spec import Experiment
from ..store.layout import ExperimentDir, atomic_write_json

POINT = ("llm", "visual_tokens", "compressor", "task", "seed")


@dataclass
class RoundLog:
    """rounds.json: ``rounds[i]`` is round i+1 — its proposed cells (round 1: the grid, not listed)
    and its fit summary."""

    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, exp_dir: ExperimentDir) -> RoundLog:
        from ..store.checks import read, rounds_problem

        doc = read(exp_dir.rounds, rounds_problem, f"`vlmscale repair {exp_dir.root.name}` rebuilds it from the "
                                                   "ledger (the proposed cells that trained keep counting)")
        return cls() if doc is None else cls(doc["rounds"])

    def save(self, exp_dir: ExperimentDir) -> None:
        atomic_write_json(exp_dir.rounds, {"rounds": self.rounds})

    def entry(self, number: int) -> dict[str, Any]:
        while len(self.rounds) < number:
            self.rounds.append({"round": len(self.rounds) + 1, "cells": [], "fit": None})
        return self.rounds[number - 1]

    def proposed(self, number: int, grid_round: int = 1) -> bool:
        """Whether the round's cells are known: the grid's rounds always, a later round once proposed."""
        return number <= grid_round or (number <= len(self.rounds) and bool(self.rounds[number - 1]["cells"]))

    def add_round(self, number: int, points: list[dict[str, Any]]) -> None:
        self.entry(number)["cells"] = points

    def record_fit(self, number: int, summary: dict[str, Any]) -> None:
        self.entry(number)["fit"] = summary


def round_points(log: RoundLog, number: int) -> list[tuple]:
    """(llm, V, compressor, task, seed) of a later round's proposed cells."""
    return [tuple(p[k] for k in POINT) for p in log.entry(number)["cells"]]


def grid_round(exp: Experiment) -> int:
    """The round the spec's grid reaches: 1, or the last round a proposed next.yaml added to it."""
    return max(exp.spec.grid.rounds())


def proposed_points(exp: Experiment, analysis) -> list[dict[str, Any]]:
    """The next round's cells as rounds.json keeps them: each pick's grid point, why it was picked,
    and the law's forecast for it (at ``fit.ci_level``)."""
    from ..scaling.forecast import forecast

    return [{"llm": p.candidate.llm, "visual_tokens": p.candidate.visual_tokens, "compressor": p.candidate.compressor,
             "task": exp.spec.grid.tasks[0], "seed": exp.spec.grid.seeds[0], "reason": p.reason,
             "forecast": forecast(analysis.fit, p.candidate.n, p.candidate.visual_tokens).as_dict()}
            for p in analysis.picks]


def forecast_check(log: RoundLog, number: int, table: list[dict[str, Any]], metric: str):
    """How round ``number``'s forecasts fared against its finished cells' ``metric`` (None: no
    forecasts, e.g. the grid's round, or nothing finished)."""
    from ..scaling.forecast import Forecast, check_forecasts
    from ..spec import cell_key

    if number > len(log.rounds):
        return None
    measured = {r["cell"]: r.get(metric) for r in table if r.get("status") == "finished"}
    pairs = []
    for p in log.entry(number)["cells"]:
        value = measured.get(cell_key(*(p[k] for k in POINT)))
        if "forecast" in p and isinstance(value, (int, float)):
            pairs.append((Forecast.from_dict(p["forecast"]), float(value)))
    return check_forecasts(number, pairs)


def fit_summary(analysis, cells: int, check=None) -> dict[str, Any]:
    """What the report's round-by-round table shows: V* with its interval, and the frontier's
    interval — the mean width of the predicted error's interval along the frontier, the quantity
    the proposals reduce."""
    fr, f = analysis.frontier, analysis.fit
    ci = fr.optimal_visual_tokens_ci if fr is not None else None
    widths = [p.error_ci[1] - p.error_ci[0] for p in fr.points] if fr is not None else []
    return {"cells": cells, "params": f.params, "loo_rel_error": f.loo_rel_error,
            "v_star": fr.optimal_visual_tokens if fr is not None else None,
            "v_star_ci": list(ci) if ci else None, "v_star_ci_width": (ci[1] - ci[0]) if ci else None,
            "frontier_ci_width": sum(widths) / len(widths) if widths else None,
            **({"forecast_check": check.as_dict()} if check is not None else {})}


def should_stop(exp: Experiment, summary: dict[str, Any]) -> bool:
    limit = exp.spec.rounds.stop_v_star_ci_width
    width = summary.get("v_star_ci_width")
    return limit is not None and width is not None and width < limit

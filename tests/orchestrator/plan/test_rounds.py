"""rounds.json's forecasts and their check: a proposed round's cells carry the law's forecast, and
the round's check reads each finished cell's measured metric against it (only finished cells count)."""

from __future__ import annotations

from orchestrator.plan.rounds import RoundLog, forecast_check
from orchestrator.spec import cell_key


def _point(llm, v, value, low, high):
    return {"llm": llm, "visual_tokens": v, "compressor": "avgpool", "task": "shapes", "seed": 0, "reason": "r",
            "forecast": {"value": value, "low": low, "high": high, "level": 0.9}}


def test_a_rounds_check_reads_its_finished_cells_against_their_forecasts():
    log = RoundLog()
    log.add_round(2, [_point("tiny-l", 1, 0.50, 0.45, 0.55), _point("tiny-l", 4, 0.40, 0.38, 0.42),
                      _point("tiny-l", 16, 0.30, 0.25, 0.35)])
    table = [{"cell": cell_key("tiny-l", 1, "avgpool", "shapes", 0), "status": "finished", "error": 0.52},
             {"cell": cell_key("tiny-l", 4, "avgpool", "shapes", 0), "status": "finished", "error": 0.44},
             {"cell": cell_key("tiny-l", 16, "avgpool", "shapes", 0), "status": "pending", "error": None},
             {"cell": cell_key("tiny-s", 1, "avgpool", "shapes", 0), "status": "finished", "error": 0.6}]
    check = forecast_check(log, 2, table, "error")
    assert (check.round, check.cells, check.inside) == (2, 2, 1)
    assert abs(check.median_rel_error - (0.02 / 0.52 + 0.04 / 0.44) / 2) < 1e-12
    assert forecast_check(log, 1, table, "error") is None  # the grid's round has no forecasts
    assert forecast_check(log, 3, table, "error") is None  # not proposed
    old = RoundLog([{"round": 1, "cells": [], "fit": None},
                    {"round": 2, "cells": [{k: v for k, v in p.items() if k != "forecast"}
                                           for p in log.entry(2)["cells"]], "fit": None}])
    assert forecast_check(old, 2, table, "error") is None  # a rounds.json from before forecasts

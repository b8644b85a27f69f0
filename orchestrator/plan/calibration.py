"""Learning-rate calibration, the plan's side: which learning rate each LLM size trains at, and
whether a stored calibration still counts (the search itself: orchestrator/run/calibration_search.py).

A scaling law is only as good as each point on it, and one hand-set learning rate (even scaled by
width) is too high for some sizes and too low for others. With ``training.lr`` a calibration
block, each LLM of the study gets a Ray Tune search: Optuna's TPE (seeded) proposes learning
rates, every trial trains a short cell (the study's own cell at the calibration V and steps) in
its trial actor, ASHA stops the trials whose training loss trails, and the learning rate with the
lowest final evaluation loss wins. That size's cells then train at it.

The calibration is part of the experiment's state (``<experiment>/calibration.json``, atomic):
a resumed, re-run or re-submitted experiment reuses it as long as the calibration settings are
unchanged. MLflow gets one run per size (tagged ``vlmscale.role = calibration``) with each trial
as a child run and an LR-versus-loss plot.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..spec import Experiment, make_cell
from ..store.layout import ExperimentDir


def settings_digest(exp: Experiment, llm: str) -> str:
    """What a size's calibration depends on: the search, and the settings of the cell it trains
    but its LR (as the spec names them: a moved experiment keeps its calibration)."""
    cal = exp.spec.training.calibration
    assert cal is not None  # called only for a spec with a calibration block
    cell = _base_cell(exp, llm)
    settings = {k: v for k, v in cell.settings.items() if k != "train.lr"}
    blob = json.dumps({"search": cal.model_dump(mode="json"), "cell": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def current_lrs(exp: Experiment, exp_dir: ExperimentDir) -> dict[str, float]:
    """The calibrated LR of every size calibrated under the spec's current settings (none without
    a calibration block): what the cells of those sizes train at."""
    if exp.spec.training.calibration is None:
        return {}
    sizes = read_calibration(exp_dir)["sizes"]
    llms = dict.fromkeys(p[0] for p in exp.spec.grid.combinations())
    return {llm: sizes[llm]["lr"] for llm in llms
            if llm in sizes and sizes[llm].get("settings") == settings_digest(exp, llm)}


def _base_cell(exp: Experiment, llm: str, vision_path: str | None = None):
    s = exp.spec
    cal = s.training.calibration
    assert cal is not None  # called only for a spec with a calibration block
    combos = s.grid.combinations()
    v = cal.visual_tokens or min(c[1] for c in combos)
    return make_cell(exp, llm, v, combos[0][2], combos[0][3], cal.seed, vision_path=vision_path)


def trial_cell(exp: Experiment, llm: str, vision_path: str | None = None):
    """The short cell a calibration trial trains (its LR is set per trial)."""
    import dataclasses

    s = exp.spec
    cal = s.training.calibration
    assert cal is not None  # called only for a spec with a calibration block
    cell = _base_cell(exp, llm, vision_path)
    steps = cal.trial_steps(s.training.steps)
    train = dataclasses.replace(cell.config.train, steps=steps, checkpoint_every=10**9, eval_every=0,
                                log_every=max(1, min(s.training.log_every, steps // 6 or 1)))
    data = dataclasses.replace(cell.config.data, eval_size=min(cell.config.data.eval_size, 512))
    return dataclasses.replace(cell.config, train=train, data=data, fault=None)


def read_calibration(exp_dir: ExperimentDir) -> dict[str, Any]:
    from ..store.checks import calibration_problem, read, repair_fix

    return read(exp_dir.calibration, calibration_problem, repair_fix(exp_dir.root.name) + " (the sizes are "
                "calibrated again)", missing={"sizes": {}})


def chosen_lrs(exp_dir: ExperimentDir) -> dict[str, float]:
    return {llm: entry["lr"] for llm, entry in read_calibration(exp_dir)["sizes"].items()}

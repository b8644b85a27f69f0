"""The embedded default shows both regimes of the study (slow: a 12- and a 9-cell grid, ~3.5 min).

Reasoning questions (compare and add counts) need little of the image and much of the LLM: the
fitted law has α > β. Reading letters needs every cell's detail: β > α. The grids are the
examples' own, run by bench/law_stability.py (the script the README's figures come from).
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = pytest.mark.slow


def _law(example: str) -> dict:
    import law_stability

    out = law_stability.run(ROOT / "examples" / example, seeds=[0], threads=["1"], sets=[], metric=None, jobs=2)
    (run,) = out["runs"]
    return run


def test_reasoning_spends_on_parameters_and_text_reading_on_tokens():
    reasoning, text = _law("reasoning.yaml"), _law("text.yaml")
    r, t = reasoning["params"], text["params"]
    assert r["alpha"] > r["beta"] >= 0, r
    assert t["beta"] > t["alpha"] > 0, t
    # signs: error falls with N on reasoning and with V on text in most adjacent pairs
    assert reasoning["falls"][0] >= 2 * reasoning["falls"][1] / 3 and text["falls"][2] >= 5
    # the headline: with a 50-token prompt the inference-optimal V is small
    assert reasoning["v_star_q50"] <= 16

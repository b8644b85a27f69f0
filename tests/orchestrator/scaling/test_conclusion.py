"""The conclusion in words (orchestrator/scaling/conclusion.py) on laws whose answer is known, and
the smaller honesty fixes around it: an ETA that does not jump, a busy machine's profile flagged."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.scaling.analysis import Observations, analyze, format_analysis
from orchestrator.scaling.design import Candidate, ProposalRequest
from orchestrator.scaling.fit import FitSettings
from orchestrator.scaling.forms import predict

N = np.repeat([2e4, 8e4, 3e5, 1.2e6, 5e6], 6)
V = np.tile([1, 4, 16, 36, 64, 144], 5).astype(float)


def _analysis(params, noise=0.003, text_tokens=50.0, candidates=(), k=0, seed=0):
    rng = np.random.default_rng(seed)
    e = np.clip(predict("multiplicative", params, N, V) * (1 + noise * rng.standard_normal(len(N))), 0.01, 0.99)
    names = tuple(f"m{int(n)}" for n in N)
    obs = Observations(tuple(f"c{i}" for i in range(len(N))), names, ("avgpool",) * len(N), N, V, e, "error")
    return analyze(obs, text_tokens=text_tokens, settings=FitSettings(bootstrap=200), proposals=ProposalRequest(candidates=list(candidates), k=k))


def test_an_interior_optimum_is_located_and_the_faster_input_named():
    # alpha > beta: V* = beta*Q/(alpha - beta) = 0.06*50/0.06 = 50, inside [1, 144]
    a = _analysis({"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15})
    c = a.conclusion
    assert c.located is True
    assert c.headline.startswith("V* = ") and "is located inside the trained V [1, 144]" in c.headline
    v_star = float(c.headline.split()[2])
    assert 35 < v_star < 70  # the closed form's 50, fitted
    assert any("falls faster with LLM size than with visual tokens" in s and "α > β in" in s for s in c.details)
    assert any("leave-one-out relative error" in s for s in c.details)
    assert "conclusion:" in format_analysis(a) and "is located" in format_analysis(a)
    assert a.as_dict()["conclusion"][0] == c.headline


def test_an_optimum_at_the_edge_is_not_located_and_the_next_runs_say_what_they_are_for():
    # beta > alpha: the error keeps falling with V at any budget, so V* sits at the largest V trained
    cands = [Candidate("m5000000", 5e6, 576, "avgpool", 1e12, "m5000000-v576"),
             Candidate("big", 2e7, 16, "avgpool", 1e12, "big-v16")]
    a = _analysis({"a": 0.8, "alpha": 0.05, "beta": 0.12, "d": 0.1}, candidates=cands, k=2)
    c = a.conclusion
    assert c.located is False
    assert "is at the largest V trained" in c.headline and "the optimum is not located" in c.headline
    assert "no candidate has more visual tokens" not in c.headline  # V = 576 is a candidate
    assert any("falls faster with visual tokens than with LLM size" in s for s in c.details)
    nxt = next(s for s in c.details if s.startswith("The next runs"))
    assert "train past the largest V" in nxt and "reach LLM sizes the frontier now extrapolates to" in nxt


def test_cached_text_puts_the_optimum_at_one_token_and_says_why():
    a = _analysis({"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15}, text_tokens=0.0)
    c = a.conclusion
    assert c.located is False and "at the smallest V trained (a single token: fewer is impossible)" in c.headline
    assert "with Q = 0 the law puts it at an edge of V" in c.headline


def test_a_rough_fit_says_so_and_no_candidates_is_said():
    a = _analysis({"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15}, noise=0.35, seed=3)
    sentences = " ".join(a.conclusion.sentences)
    assert a.fit.loo_rel_error > 0.15 and "sketches the trend" in sentences
    assert "No candidate cell is left to propose" in sentences


def test_the_eta_counts_the_schedulers_slots_not_the_cells_running_this_instant():
    from orchestrator.run.progress import ProgressBoard

    board = ProgressBoard(slots=2)
    for key in ("a", "b", "c", "d"):
        board.add(key, steps=100, batch_size=10)
    board.update("a", "running", {"step": 90, "samples_per_s": 100.0})
    board.update("b", "running", {"step": 90, "samples_per_s": 100.0})
    before = board.eta_s()
    board.update("a", "finished", {"step": 100})  # between a's end and c's start only b runs
    after = board.eta_s()
    assert after < before  # it used to double here (one running cell, all the work left on it)
    assert after == pytest.approx((10 * 10 + 2 * 100 * 10) / (100.0 * 2))


def test_a_profile_whose_repeats_spread_widely_is_flagged():
    from orchestrator.run.profiling import spread_warning

    quiet = [{"prefill_latency_s": 1.0, "prefill_latency_p10_s": 0.95, "prefill_latency_p90_s": 1.1}] * 8
    assert spread_warning(quiet) is None
    busy = quiet[:4] + [{"prefill_latency_s": 1.0, "prefill_latency_p10_s": 0.5, "prefill_latency_p90_s": 2.2}] * 4
    warning = spread_warning(busy)
    assert warning.startswith("the machine is busy: timings unreliable (4 of 8 points")

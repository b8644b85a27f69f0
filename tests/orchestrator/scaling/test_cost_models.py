"""Cost models for the frontier (orchestrator/scaling/cost.py): interpolation of a measured table,
refusal far outside it, the switch between FLOPs and measured cost, and where they disagree."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.scaling.analysis import Observations, analyze
from orchestrator.scaling.cost import FlopsCost, OutsideTable, leave_one_out, measured_cost, parse_cost, ratios
from orchestrator.scaling.fit import FitSettings
from orchestrator.scaling.frontier import Domain, frontier, optimum

NS = [2e4, 8e4, 3.2e5]
VS = [1, 4, 16, 64]


def _rows(latency, ns=NS, vs=VS, batches=(1, 8), compressor="avgpool", **extra):
    return [{"llm": f"m{i}", "llm_params": n, "visual_tokens": v, "compressor": compressor, "batch_size": b,
             "prefill_latency_s": latency(n, v, b), "peak_memory_bytes": 4 * n + 1000 * v * b,
             "inference_flops_vlm": 2 * n * (50 + v) + 1e6, "device": "test-gpu", **extra}
            for i, n in enumerate(ns) for v in vs for b in batches]


def power_law(n, v, b):
    return 1e-3 * (n / 1e4) ** 0.5 * v ** 0.25 * b ** 0.5


def test_a_power_law_table_is_reproduced_at_and_between_the_profiled_points():
    m = measured_cost(_rows(power_law), "latency", 1)
    assert m.batch_size == 1 and m.device == "test-gpu" and m.name == "latency:1"
    for n in NS:
        for v in VS:
            assert m(n, v) == pytest.approx(power_law(n, v, 1), rel=1e-9)
    # between grid points, and up to 1.5x beyond the grid: bilinear in log-log is exact for a power law
    for n, v in [(4e4, 2), (1.5e5, 30), (4.5e5, 90), (1.4e4, 0.7)]:
        assert m(n, v) == pytest.approx(power_law(n, v, 1), rel=1e-9)
    assert leave_one_out(_rows(power_law), "latency", 8)[0]["rel_error"] == pytest.approx(0, abs=1e-9)
    assert max(x["rel_error"] for x in leave_one_out(_rows(power_law), "latency", 8)) < 1e-9


def test_far_outside_the_table_the_model_refuses_with_what_to_do():
    m = measured_cost(_rows(power_law), "latency", 1)
    with pytest.raises(OutsideTable, match=r"N = 7e\+06 is outside the profiled N \[2e\+04, 3\.2e\+05\] by more "
                                           r"than 1\.5x; profile that LLM size \(spec\.profile\.llms\)"):
        m(7e6, 4)
    with pytest.raises(OutsideTable, match=r"V = 576 .*grid\.visual_tokens"):
        m(8e4, 576)
    with pytest.raises(ValueError, match=r"batch size 32 was not profiled \(profiled: 1, 8\)"):
        measured_cost(_rows(power_law), "latency", 32)
    holes = [r for r in _rows(power_law) if not (r["llm_params"] == 8e4 and r["visual_tokens"] == 4)]
    with pytest.raises(ValueError, match=r"misses N = 8e\+04, V = 4 at batch 1"):
        measured_cost(holes, "latency", 1)
    with pytest.raises(ValueError, match="at least two LLM sizes"):
        measured_cost(_rows(power_law, ns=[2e4]), "latency", 1)


@pytest.mark.parametrize("text,expected", [(None, ("flops", None)), ("flops", ("flops", None)),
                                           ("latency", ("latency", None)), ("latency:8", ("latency", 8)),
                                           ("memory:1", ("memory", 1))])
def test_cost_names(text, expected):
    assert parse_cost(text) == expected


@pytest.mark.parametrize("bad", ["flop", "latency:0", "latency:x", "flops:8", "energy"])
def test_bad_cost_names_are_refused(bad):
    with pytest.raises(ValueError, match="--cost"):
        parse_cost(bad)


def test_noise_that_makes_a_bigger_model_look_faster_is_flattened():
    noisy = _rows(lambda n, v, b: power_law(n, v, b) * (0.5 if n == 8e4 else 1.0))
    m = measured_cost(noisy, "latency", 1)
    assert np.all(np.diff(m.log_table, axis=0) >= 0) and np.all(np.diff(m.log_table, axis=1) >= 0)
    n = m.max_n(float(m(8e4, 4)), np.array([4.0]), (1e4, 1e6))
    assert n[0] <= 8e4 * 1.001  # the budget of the slow-looking size buys no more than that size


def test_a_measured_flops_table_gives_the_flops_frontier():
    """A table that is FLOPs (times a constant) must give the FLOPs model's frontier."""
    q = 50.0
    rows = _rows(lambda n, v, b: 1e-12 * 2 * n * (q + v), ns=[2e4, 4e4, 8e4, 1.6e5, 3.2e5], vs=[1, 2, 4, 8, 16, 32, 64])
    m = measured_cost(rows, "latency", 1)
    flops = FlopsCost(q)
    v = np.array([1.0, 5.0, 60.0])
    budget = 2 * 1e5 * (q + 10)
    # Q + V is not a power law in V: log-log interpolation between profiled V is off by < 1 %
    assert m.max_n(1e-12 * budget, v, (2e4, 3.2e5)) == pytest.approx(flops.max_n(budget, v, (2e4, 3.2e5)), rel=1e-2)
    # a law, and its frontier under both: the same optimum
    params = {"a": 2.0, "alpha": 0.3, "beta": 0.1, "d": 0.05}
    n1, v1, e1 = optimum("multiplicative", [params], budget, flops, (2e4, 3.2e5), (1, 64))
    n2, v2, e2 = optimum("multiplicative", [params], 1e-12 * budget, m, (2e4, 3.2e5), (1, 64))
    # the optimum is flat and piecewise power laws have kinks at the profiled V: V* may move to the
    # profiled V next to it (here 25 → 32), the predicted error hardly at all
    assert v1[0] == pytest.approx(25, rel=0.01) and 16 <= v2[0] <= 32
    assert e2[0] == pytest.approx(e1[0], rel=2e-3) and n2[0] == pytest.approx(n1[0], rel=0.15)


def _observations():
    rng = np.random.default_rng(0)
    n = np.repeat(NS, len(VS)).astype(float)
    v = np.tile(VS, len(NS)).astype(float)
    e = 2.0 * n ** -0.3 * v ** -0.1 + 0.05
    e = e * (1 + 0.01 * rng.standard_normal(len(e)))
    return Observations(tuple(f"c{i}" for i in range(len(n))), tuple(f"m{NS.index(x)}" for x in n),
                        ("avgpool",) * len(n), n, v, e, "error")


def test_the_cost_switch_moves_the_frontier_where_latency_is_flat_in_v():
    """At small batch visual tokens are nearly free in latency: the latency frontier takes the
    most visual tokens, where the FLOPs frontier (Q = 50) takes few — and the comparison says so."""
    obs = _observations()
    flat = _rows(lambda n, v, b: 1e-3 * (n / 1e4) ** 0.5 * (1 + 1e-4 * v) * b ** 0.7)
    lat = measured_cost(flat, "latency", 1)
    flops = analyze(obs, text_tokens=50.0, settings=FitSettings(bootstrap=20))
    assert flops.frontier.cost == "flops" and flops.frontier.optimal_visual_tokens is not None
    same = analyze(obs, text_tokens=50.0, cost=FlopsCost(50.0), settings=FitSettings(bootstrap=20))
    assert [p.v for p in same.frontier.points] == [p.v for p in flops.frontier.points]

    latency = analyze(obs, text_tokens=50.0, cost=lat, compare=(FlopsCost(50.0),), settings=FitSettings(bootstrap=20))
    f = latency.frontier
    assert f.cost == "latency:1" and f.cost_unit == "s" and f.optimal_visual_tokens is None
    # every budget above the cheapest (which buys only the smallest cell) takes the most V one can run
    assert all(p.v == pytest.approx(64) for p in f.points[1:])
    assert flops.frontier.optimal_visual_tokens == pytest.approx(25, rel=0.3)  # beta Q / (alpha - beta)
    assert np.median([p.v for p in flops.frontier.points]) < 40
    (other, cmp), = latency.alternatives
    assert other.cost == "flops" and cmp["disagree"] and cmp["budgets_disagreeing"] >= 1
    assert "V* falls from" in cmp["sentence"]  # FLOPs would spend the same latency on fewer tokens

    back = analyze(obs, text_tokens=50.0, compare=(lat,), settings=FitSettings(bootstrap=20))
    (_, cmp), = back.alternatives
    assert cmp["disagree"] and cmp["sentence"].startswith("prefill latency at batch 1 on test-gpu: V* rises from")


def test_a_law_fitted_where_the_cost_was_not_measured_is_refused():
    obs = _observations()
    narrow = measured_cost(_rows(power_law, ns=[2e4, 4e4]), "latency", 1)
    with pytest.raises(OutsideTable, match="profile that LLM size"):
        analyze(obs, cost=narrow, settings=FitSettings(bootstrap=20))


def test_frontier_takes_a_number_as_q_as_before():
    obs = _observations()
    fit = analyze(obs, text_tokens=50.0, settings=FitSettings(bootstrap=20)).fit
    a = frontier(fit, [1e7, 1e8], 50.0, domain=Domain(n_range=(2e4, 3.2e5), v_range=(1, 64)))
    b = frontier(fit, [1e7, 1e8], FlopsCost(50.0), domain=Domain(n_range=(2e4, 3.2e5), v_range=(1, 64)))
    assert a == b and a.as_dict()["points"][0]["budget_flops"] == 1e7


def test_latency_over_flops_ratios():
    r = ratios(_rows(power_law))
    first = r[0]
    assert (first["v_low"], first["v_high"]) == (1, 64)
    assert first["latency_ratio"] == pytest.approx(64 ** 0.25)
    n = NS[0]  # the whole VLM's FLOPs: the image's fixed part dilutes the LLM's ratio
    assert first["flops_ratio"] == pytest.approx((2 * n * (50 + 64) + 1e6) / (2 * n * 51 + 1e6))
    assert first["latency_over_flops"] == pytest.approx(first["latency_ratio"] / first["flops_ratio"])


def test_the_profile_block_of_the_spec():
    from pathlib import Path

    import yaml

    from orchestrator.run.profiling import points
    from orchestrator.spec import SpecError, parse

    doc = yaml.safe_load((Path(__file__).resolve().parents[3] / "examples" / "quickstart.yaml").read_text())
    exp = parse(doc)
    assert exp.spec.profile.batch_sizes == [1, 8]  # the default
    from orchestrator.run.profiling import measured_q

    assert measured_q(exp) == exp.spec.fit.text_tokens == 50  # one Q: the fit's, 50 by default
    assert len(points(exp)) == 9
    doc["spec"]["profile"] = {"batch_sizes": [8, 1, 8], "llms": ["tiny-xl"], "gpus": 1, "accelerator_type": "H100"}
    exp = parse(doc)
    assert exp.spec.profile.batch_sizes == [1, 8] and len(points(exp)) == 12  # tiny-xl at every V
    doc["spec"]["profile"] = {"batch_sizes": [0]}
    with pytest.raises(SpecError, match="profile.batch_sizes"):
        parse(doc)
    doc["spec"]["profile"] = {"repeat": 5}
    with pytest.raises(SpecError, match="profile.repeat"):
        parse(doc)
    doc["spec"]["profile"] = {"text_tokens": 20}  # a second Q would make two FLOPs per cell
    with pytest.raises(SpecError, match="text_tokens: Q is one setting, spec.fit.text_tokens"):
        parse(doc)

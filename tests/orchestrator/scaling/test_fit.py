"""The scaling-law engine: recovery, interval coverage, degenerate data, frontier, proposals."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.scaling.design import Candidate, propose_cheapest, propose_d_optimal, propose_frontier, propose_random
from orchestrator.scaling.fit import FitSettings, fit_law, fit_params
from orchestrator.scaling.forms import FitError, closed_form_visual_tokens, predict
from orchestrator.scaling.frontier import Domain, frontier, optimum

ROOT = Path(__file__).resolve().parents[3]
N = np.repeat([2e4, 8e4, 3e5, 1.2e6, 5e6], 6)
V = np.tile([1, 4, 16, 36, 64, 144], 5).astype(float)
TRUE = {
    "multiplicative": {"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15},
    "additive": {"A": 3.0, "alpha": 0.3, "B": 0.3, "beta": 0.4, "d": 0.2},
}
TOL = {  # absolute tolerance per parameter at 0.3% multiplicative noise
    "multiplicative": {"a": 0.35, "alpha": 0.02, "beta": 0.01, "d": 0.04},
    "additive": {"A": 1.0, "alpha": 0.04, "B": 0.05, "beta": 0.05, "d": 0.02},
}


def _data(form, seed=0, noise=0.003):
    rng = np.random.default_rng(seed)
    return predict(form, TRUE[form], N, V) * (1 + noise * rng.standard_normal(len(N)))


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
@pytest.mark.parametrize("loss", ["squared", "huber_log"])
def test_recovers_known_parameters(form, loss):
    fit = fit_law(N, V, _data(form), form=form, settings=FitSettings(loss=loss, bootstrap=200, seed=1))
    for name, value in TRUE[form].items():
        assert abs(fit.params[name] - value) < TOL[form][name], (name, fit.params)
        lo, hi = fit.ci[name]
        assert lo <= fit.params[name] <= hi
    assert fit.loo_rel_error < 0.01 and fit.holdout_largest_rel_error < 0.02
    assert 0 <= fit.params["d"] < _data(form).min()


def test_bootstrap_interval_covers_the_truth_near_its_nominal_rate():
    hits = {"alpha": 0, "beta": 0}
    trials = 40
    for seed in range(trials):
        fit = fit_law(N, V, _data("multiplicative", seed=100 + seed, noise=0.01), settings=FitSettings(bootstrap=200, seed=seed, cross_validate=False))
        for name in hits:
            lo, hi = fit.ci[name]
            hits[name] += lo <= TRUE["multiplicative"][name] <= hi
    for name, h in hits.items():  # nominal 90%: a percentile bootstrap at n=30 lands near it
        assert 0.7 <= h / trials <= 1.0, (name, h / trials)


def test_fit_is_deterministic():
    e = _data("multiplicative")
    a, b = fit_law(N, V, e, settings=FitSettings(bootstrap=100, seed=3)), fit_law(N, V, e, settings=FitSettings(bootstrap=100, seed=3))
    assert a.params == b.params and a.ci == b.ci and np.array_equal(a.bootstrap, b.bootstrap)
    none = fit_law(N, V, e, settings=FitSettings(bootstrap=0))
    assert none.params == a.params and none.bootstrap.shape == (0, 4) and np.isnan(none.ci["alpha"][0])


@pytest.mark.parametrize(
    "n,v,e,fragment",
    [
        ([1e4, 2e4], [1, 4], [0.5, 0.4], "2 points cannot identify"),
        ([1e4] * 6, [1, 4, 16, 1, 4, 16], [0.5, 0.4, 0.3, 0.5, 0.4, 0.3], "same LLM size"),
        ([1e4, 2e4, 4e4, 1e4, 2e4, 4e4], [4] * 6, [0.5, 0.4, 0.3, 0.5, 0.4, 0.3], "same number of visual tokens"),
        ([1e4, 2e4, 4e4, 1e4, 2e4, 4e4], [1, 1, 1, 4, 4, 4], [0.5, np.nan, 0.3, 0.5, 0.4, 0.3], "NaN"),
        ([1e4, 2e4, 4e4, 1e4, 2e4, 4e4], [1, 1, 1, 4, 4, 4], [0.5, 1.2, 0.3, 0.5, 0.4, 0.3], "between 0 and 1"),
        ([1e4, 2e4, 4e4, 1e4, 2e4, 4e4], [1, 1, 1, 4, 4, 4], [0.5, -0.1, 0.3, 0.5, 0.4, 0.3], "between 0 and 1"),  # 0 and 1 are observations
    ],
)
def test_degenerate_data_raises_fit_error(n, v, e, fragment):
    with pytest.raises(FitError, match=fragment):
        fit_params(n, v, e)


@pytest.mark.parametrize("q", [0.0, 50.0, 200.0])
def test_frontier_matches_the_closed_form(q):
    params = TRUE["multiplicative"]
    v_star = closed_form_visual_tokens(params["alpha"], params["beta"], q, 1, 576)
    assert v_star == (1 if q == 0 else pytest.approx(params["beta"] * q / (params["alpha"] - params["beta"])))
    for budget in (1e9, 1e11):
        n, v, e = optimum("multiplicative", [params], budget, q, (1e3, 1e12), (1, 576))
        assert v[0] == pytest.approx(v_star, rel=0.01)
        assert n[0] == pytest.approx(budget / (2 * (q + v[0])), rel=1e-9)
    # the study's numbers: alpha 0.077, beta 0.015, Q = 50 -> about 12-14 tokens
    assert 11 < closed_form_visual_tokens(0.077, 0.015, 50, 1, 576) < 15
    # visual tokens matter more than parameters: use as many as allowed
    assert closed_form_visual_tokens(0.05, 0.08, 50, 1, 576) == 576


def test_frontier_intervals_and_runnable_cells():
    fit = fit_law(N, V, _data("multiplicative"), settings=FitSettings(bootstrap=200))
    fr = frontier(fit, [1e6, 1e7, 1e9], 50.0, domain=Domain(n_range=(2e4, 5e6), v_range=(1, 144), runnable=list(zip(N, V))))
    cheapest = frontier(fit, [2 * 2e4 * 51], 50.0, domain=Domain(n_range=(2e4, 5e6), v_range=(1, 144))).points[0]
    assert cheapest.n == pytest.approx(2e4) and cheapest.v == 1  # exactly the cheapest configuration is feasible
    too_small = fr.points[0]  # below the cheapest configuration, 2 * 2e4 * (50 + 1)
    assert np.isnan(too_small.error) and too_small.discrete is None
    for p in fr.points[1:]:
        assert p.error_ci[0] <= p.error <= p.error_ci[1] + 1e-12
        n, v, err = p.discrete
        assert 2 * n * (50 + v) <= p.budget and err >= p.error - 1e-12
    assert fr.optimal_visual_tokens == pytest.approx(closed_form_visual_tokens(
        fit.params["alpha"], fit.params["beta"], 50, 1, 144))


def _candidates(done):
    sizes = [2e4, 8e4, 3e5, 1.2e6, 5e6, 2e7]
    return [Candidate(f"m{i}", n, v, "quecc", n * 100) for i, n in enumerate(sizes) for v in (1, 4, 16, 36, 64, 144)
            if (n, v) not in done]


def test_proposals_are_deterministic_and_never_repeat_a_done_cell():
    keep = (N <= 3e5) & (V <= 36)
    fit = fit_law(N[keep], V[keep], _data("multiplicative")[keep], settings=FitSettings(bootstrap=200, seed=0))
    done = set(zip(N[keep], V[keep]))
    cands = _candidates(done)
    trained = Domain((2e4, 2e7), (1, 144), trained=sorted(done))
    args = (fit, cands, 4, [1e6, 1e7, 1e8], 0.0)
    picks = propose_frontier(*args, trained)
    assert [p.candidate for p in picks] == [p.candidate for p in propose_frontier(*args, trained)]
    boot = propose_frontier(*args, Domain((2e4, 2e7), (1, 144)), method="bootstrap")
    assert [p.candidate for p in boot] == [p.candidate for p in propose_frontier(*args, Domain((2e4, 2e7), (1, 144)),
                                                                                 method="bootstrap")]
    assert not {(p.candidate.n, p.candidate.visual_tokens) for p in boot} & done
    assert len(picks) == 4 and len({p.candidate for p in picks}) == 4
    assert not {(p.candidate.n, p.candidate.visual_tokens) for p in picks} & done
    assert all(p.reason for p in picks)
    # a cost budget is respected
    capped = propose_frontier(*args, trained, budget=cands[0].cost * 3)
    assert sum(p.candidate.cost for p in capped) <= cands[0].cost * 3
    # the baselines
    assert propose_random(cands, 3, seed=1) == propose_random(cands, 3, seed=1)
    assert propose_cheapest(cands, 2)[0].cost == min(c.cost for c in cands)
    d_opt = propose_d_optimal(fit, np.array(sorted(done)), cands, 3)
    assert len(set(d_opt)) == 3 and not {(c.n, c.visual_tokens) for c in d_opt} & done


def test_fit_cli_on_a_csv_prints_the_documented_json(tmp_path):
    csv = tmp_path / "cells.csv"
    e = _data("multiplicative")
    csv.write_text("llm_params,visual_tokens,error,extra\n" + "".join(
        f"{n},{int(v)},{err},x\n" for n, v, err in zip(N, V, e)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(csv), "--format", "json",
                        "--text-tokens", "50", "--bootstrap", "200"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["form"] == "multiplicative" and set(out["params"]) == {"a", "alpha", "beta", "d"}
    assert set(out["ci"]) == {"a", "alpha", "beta", "d"} and out["loo_rel_error"] < 0.01
    assert out["metric_kind"] == "error" and out["ci_level"] == 0.9
    assert out["objective"] == pytest.approx(0.5 * out["rmse"] ** 2 * len(e)) and 0.9 < out["r2"] <= 1
    assert out["frontier"]["text_tokens"] == 50
    assert out["frontier"]["optimal_visual_tokens"] == pytest.approx(
        out["params"]["beta"] * 50 / (out["params"]["alpha"] - out["params"]["beta"]), rel=1e-6)


def test_fit_cli_refuses_bad_data_in_one_line(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("llm_params,visual_tokens,error\n1e4,1,0.5\n1e4,4,0.4\n")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(csv)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cannot identify" in r.stderr
    csv.write_text("llm_params,error\n1e4,0.5\n")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(csv)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "missing column(s) visual_tokens" in r.stderr


# Chinchilla (Hoffmann et al. 2022, approach 3): L(N, D) = E + A/N^α + B/D^β
CHINCHILLA = {"A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28, "d": 1.69}


def _chinchilla(seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(7e7, 1.6e10, 15), 20)
    d = np.tile(np.geomspace(5e9, 5e11, 20), 15)
    loss = predict("additive", CHINCHILLA, n, d) * (1 + noise * rng.standard_normal(len(n)))
    return n, d, loss


@pytest.mark.parametrize("loss", ["squared", "huber_log"])
def test_recovers_a_chinchilla_law_from_raw_losses(loss):
    """300 runs, losses 1.9–3.4 nats (no rescaling), the additive law in N and D."""
    n, d, e = _chinchilla()
    assert e.min() > 1.8 and e.max() > 3.0
    fit = fit_law(n, d, e, form="additive", settings=FitSettings(loss=loss, bootstrap=100, kind="loss", ci_level=0.8))
    p = fit.params
    assert p["alpha"] == pytest.approx(0.34, abs=0.03) and p["beta"] == pytest.approx(0.28, abs=0.03)
    assert p["d"] == pytest.approx(1.69, abs=0.1)
    assert fit.kind == "loss" and fit.ci_level == 0.8 and fit.r2 > 0.95
    assert fit.rmse == pytest.approx(0.01 * e.mean(), rel=0.3)  # the noise, in nats
    lo, hi = fit.ci["alpha"]
    assert lo < p["alpha"] < hi


def test_a_loss_above_one_is_refused_only_as_an_error_rate():
    n, d, e = _chinchilla()
    with pytest.raises(FitError, match="error rate must lie between 0 and 1.*--metric-kind loss"):
        fit_params(n, d, e, form="additive")
    with pytest.raises(FitError, match="a loss must be positive"):
        fit_params(n, d, np.where(np.arange(len(e)) == 3, -1.0, e), form="additive", kind="loss")


def test_cross_validation_is_optional_and_the_interval_level_is_the_callers():
    e = _data("multiplicative")
    quick = fit_law(N, V, e, settings=FitSettings(bootstrap=200, cross_validate=False, ci_level=0.5))
    full = fit_law(N, V, e, settings=FitSettings(bootstrap=200, ci_level=0.95))
    assert quick.loo_rel_error is None and quick.holdout_largest_rel_error is None
    assert full.loo_rel_error is not None and full.loo_rel_error < 0.01
    for p in ("alpha", "beta"):
        assert quick.params[p] == full.params[p]
        assert full.ci[p][0] < quick.ci[p][0] <= quick.ci[p][1] < full.ci[p][1]  # 50% inside 95%


def test_fit_cli_fits_eval_loss_in_nats_from_a_csv(tmp_path):
    n, d, e = _chinchilla()
    csv = tmp_path / "runs.csv"
    csv.write_text("llm_params,visual_tokens,eval_loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n, d, e)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(csv), "--metric", "eval_loss", "--form",
                        "additive", "--format", "json", "--bootstrap", "50", "--ci-level", "0.8",
                        "--no-cross-validation"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "eval_loss" and out["metric_kind"] == "loss" and out["ci_level"] == 0.8
    assert out["params"]["alpha"] == pytest.approx(0.34, abs=0.03) and out["loo_rel_error"] is None
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "fit", str(csv), "--metric", "eval_loss",
                        "--metric-kind", "error"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "error rate must lie between 0 and 1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("loss", ["squared", "huber_log"])
def test_errors_of_exactly_0_and_1_are_observations(loss):
    """A small eval set scores 0 or 1: fitted, counted, and never a relative error of inf."""
    e = np.clip(_data("multiplicative"), 0, 1)
    e[0], e[-1] = 1.0, 0.0
    fit = fit_law(N, V, e, settings=FitSettings(loss=loss, bootstrap=100))
    assert fit.at_bound == 2 and fit.params["d"] == 0.0  # the floor stays below the smallest error, 0
    assert np.isfinite(fit.objective) and np.isfinite(fit.loo_rel_error) and np.isfinite(fit.rmse)
    assert all(np.isfinite(fit.ci[p]).all() for p in fit.params)
    with pytest.raises(FitError, match=r"error rate must lie between 0 and 1 \(found 1.5\)"):
        fit_law(N, V, np.where(np.arange(len(e)) == 3, 1.5, e), settings=FitSettings(bootstrap=0))

"""Any two inputs, pools with costs, target regions (the engine beyond N and V)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.errors import TableError
from orchestrator.scaling.design import DesignRequest, design_pool
from orchestrator.scaling.fit import fit_map
from orchestrator.scaling.forms import predict
from orchestrator.scaling.pool import PoolColumns, PoolRequest, parse_budget, propose_from_pool
from orchestrator.scaling.table import check_cost_expression, evaluate_cost

ROOT = Path(__file__).resolve().parents[3]
SCALEBENCH = ROOT / "tests" / "fixtures" / "scalebench"
LAW = {"a": 40.0, "alpha": 0.2, "beta": 0.07, "d": 1.6}


def _pool(seed=0, observed=0.0):
    rng = np.random.default_rng(seed)
    n = np.repeat([1.6e7, 2.7e7, 5.7e7, 1.3e8, 3.7e8], 10)
    e = np.tile([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], 5).astype(float)
    loss = predict("multiplicative", LAW, n, e) * (1 + 0.003 * rng.standard_normal(len(n)))
    df = pd.DataFrame({"N": n, "E": e, "loss": loss})
    df.loc[rng.random(len(df)) >= observed, "loss"] = np.nan
    return df


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=120)


@pytest.mark.parametrize("expr,expected", [("N", [1.0, 2.0]), ("6*N*E", [6 * 1 * 3, 6 * 2 * 4]),
                                           ("6*N*E + 2*(N - 0.5)**2", [18 + 0.5, 48 + 4.5])])
def test_cost_expressions_over_columns(expr, expected):
    df = pd.DataFrame({"N": [1.0, 2.0], "E": [3.0, 4.0]})
    assert evaluate_cost(df, expr, "pool.csv").tolist() == pytest.approx(expected)


@pytest.mark.parametrize("expr,why", [
    ("__import__('os').system('touch /tmp/pwned')", "found Call"),
    ("N.__class__", "found Attribute"),
    ("N[0]", "found Subscript"),
    ("lambda: 1", "found Lambda"),
    ("N if E else 1", "found IfExp"),
    ("M*2", "'M' is not a column"),
    ("N +", "not an arithmetic expression"),
])
def test_cost_expressions_refuse_anything_but_arithmetic(expr, why):
    with pytest.raises(TableError, match=why.replace("(", r"\(")):
        check_cost_expression(expr, ["N", "E"])
    assert not Path("/tmp/pwned").exists()


def test_cost_expressions_are_bounded_and_evaluated_in_floats():
    df = pd.DataFrame({"N": [2.0, 3.0], "E": [4.0, 8.0]})
    np.testing.assert_allclose(evaluate_cost(df, "6*N*E**0.5 + N**-1 / 2", "pool.csv"), [24.25, 6 * 3 * 8 ** 0.5 + 1 / 6])
    # what hung (a ten-billion-digit integer) is an overflow to ∞ at once, refused as a cost
    with pytest.raises(TableError, match=r"row 1: cost '10\*\*10\*\*10' is inf"):
        evaluate_cost(df, "10**10**10", "pool.csv")
    with pytest.raises(TableError, match="20001 characters; a cost expression has at most 1000"):
        evaluate_cost(df, "+".join(["N"] * 10_001)[:20_001], "pool.csv")  # was a RecursionError
    deep = "-" * 70 + "N"
    with pytest.raises(TableError, match="nested more than 64 deep"):
        evaluate_cost(df, deep, "pool.csv")
    with pytest.raises(TableError, match="not an arithmetic expression"):
        evaluate_cost(df, "(" * 300 + "N" + ")" * 300, "pool.csv")  # the parser's own limit


def test_costs_must_be_positive():
    with pytest.raises(TableError, match="row 2: cost 'N - 1' is 0"):
        evaluate_cost(pd.DataFrame({"N": [2.0, 1.0]}), "N - 1", "pool.csv")


def test_budgets_absolute_or_a_share():
    assert parse_budget("10%") == (0.1, True) and parse_budget("3e9") == (3e9, False) and parse_budget(None) == (None, False)
    for bad in ("ten", "-5%", "0"):
        with pytest.raises(TableError, match="--budget"):
            parse_budget(bad)


@pytest.mark.parametrize("share", ["1%", "5%", "20%"])
def test_pool_picks_never_exceed_the_budget_and_skip_observed_and_pending(share):
    df = _pool(observed=0.2)
    df["status"] = ""
    df.loc[df.index[df["loss"].isna()][:3], "status"] = "pending"
    cost = df["N"] * df["E"]
    picks, (b,) = propose_from_pool(df, "pool.csv", columns=PoolColumns(inputs=("N", "E"), metric="loss"), request=PoolRequest(cost="N*E", k=50, budget=share))
    rows = [p.row for p in picks]
    assert len(set(rows)) == len(rows)
    assert not df.loc[rows, "loss"].notna().any() and not (df.loc[rows, "status"] == "pending").any()
    spent_before = float(cost[df["loss"].notna() | (df["status"] == "pending")].sum())
    assert b.spent == pytest.approx(spent_before) and b.budget == pytest.approx(float(share[:-1]) / 100 * cost.sum())
    assert spent_before + sum(p.cost for p in picks) <= b.budget * (1 + 1e-9) or not picks
    assert (b.observed, b.pending) == (int(df["loss"].notna().sum()), 3)


def test_pool_design_is_deterministic_and_uses_the_target():
    df = _pool(observed=0.3)
    target = pd.DataFrame({"N": [1.3e9] * 4, "E": [1.0, 8.0, 64.0, 512.0]})
    a, _ = propose_from_pool(df, "pool.csv", columns=PoolColumns(inputs=("N", "E"), metric="loss"), request=PoolRequest(cost="N*E", k=6, target=target))
    b, _ = propose_from_pool(df, "pool.csv", columns=PoolColumns(inputs=("N", "E"), metric="loss"), request=PoolRequest(cost="N*E", k=6, target=target))
    c, _ = propose_from_pool(df, "pool.csv", columns=PoolColumns(inputs=("N", "E"), metric="loss"), request=PoolRequest(cost="N*E", k=6))
    assert a == b and len(a) == 6 and a != c


def test_sequential_design_from_nothing_recovers_the_law_within_a_tenth_of_the_cost():
    """Start empty, pick one row at a time, reveal it, refit: the target-region prediction of a
    law fitted on ≤ 10 % of the pool's cost is within 1 % of the truth."""
    df = _pool(observed=1.0)
    truth = df["loss"].to_numpy()
    x1, x2, cost = df["N"].to_numpy(), df["E"].to_numpy(), (df["N"] * df["E"]).to_numpy()
    target = np.array([[1.3e9, e] for e in (1.0, 16.0, 512.0)])
    y, spent, budget = np.full(len(df), np.nan), 0.0, 0.1 * cost.sum()
    while picks := design_pool("multiplicative", np.stack([x1, x2]), y, cost, request=DesignRequest(k=1, budget=budget - spent, target=target.T)):
        y[picks[0]] = truth[picks[0]]
        spent += cost[picks[0]]
    seen = np.isfinite(y)
    assert spent <= budget and 5 <= seen.sum() < len(df)
    law = fit_map(x1[seen], x2[seen], y[seen], "multiplicative", kind="loss")
    pred, true = predict("multiplicative", law, target[:, 0], target[:, 1]), predict("multiplicative", LAW, target[:, 0], target[:, 1])
    assert np.max(np.abs(pred - true) / true) < 0.01


def test_map_fit_is_defined_from_one_point_and_agrees_with_least_squares_on_many():
    one = fit_map([1e8], [4.0], [2.3], "additive", kind="loss")
    assert all(np.isfinite(list(one.values())))
    df = _pool(observed=1.0)
    from orchestrator.scaling.fit import fit_params

    ls = fit_params(df["N"], df["E"], df["loss"], kind="loss")
    mp = fit_map(df["N"], df["E"], df["loss"], kind="loss")
    assert mp["alpha"] == pytest.approx(ls["alpha"], abs=0.01) and mp["beta"] == pytest.approx(ls["beta"], abs=0.01)


@pytest.mark.skipif(not SCALEBENCH.is_dir(), reason="needs ../shared/scalebench")
def test_fit_any_two_inputs_per_group_from_the_command_line():
    r = _cli("fit", str(SCALEBENCH / "parallel_scaling_law" / "train-00000-of-00001.parquet"), "--inputs",
             "num_params,parallel_size", "--metric", "loss", "--group", "group", "--form", "additive",
             "--bootstrap", "50", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["groups"]) == {"stack", "pile"}
    for g in out["groups"].values():
        assert g["inputs"] == ["num_params", "parallel_size"] and g["frontier"] is None and g["r2"] > 0.99
    r = _cli("fit", str(SCALEBENCH / "moe_scaling_law" / "train-00000-of-00001.parquet"), "--inputs",
             "dense_parameter_count,num_experts", "--metric", "loss_validation", "--bootstrap", "50")
    assert r.returncode == 0, r.stderr
    assert "loss_validation = a * dense_parameter_count^-alpha * num_experts^-beta + d" in r.stdout


def test_propose_from_a_pool_on_the_command_line(tmp_path):
    df = _pool(observed=0.2)
    df.to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame({"N": [1.3e9, 1.3e9], "E": [1.0, 512.0]}).to_csv(tmp_path / "target.csv", index=False)
    r = _cli("propose", "--pool", "pool.csv", "--inputs", "N,E", "--metric", "loss", "--cost", "N*E", "--budget",
             "50%", "--target", "target.csv", "-k", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    picked = pd.read_csv(tmp_path / "next.csv")
    assert len(picked) == 3 and picked["loss"].isna().all() and "proposed_cost" in picked
    bad = _cli("propose", "--pool", "pool.csv", "--inputs", "N,E", "--metric", "loss", "--cost", "open('x')",
               cwd=tmp_path)
    assert bad.returncode == 2 and "only numbers, column names" in bad.stderr and len(bad.stderr.splitlines()) == 1
    missing = _cli("propose", "--pool", "pool.csv", "--inputs", "N,X", "--metric", "loss", "--cost", "N", cwd=tmp_path)
    assert missing.returncode == 2 and "missing column(s) X" in missing.stderr


@pytest.mark.skipif(not SCALEBENCH.is_dir(), reason="needs ../shared/scalebench")
def test_scalebench_harness_writes_the_documented_json_and_is_deterministic(tmp_path):
    args = [sys.executable, str(ROOT / "bench" / "scalebench.py"), str(SCALEBENCH / "parallel_scaling_law"),
            "--inputs", "num_params,parallel_size", "--target", "loss", "--cost", "num_params", "--form", "additive",
            "--group", "group", "--seeds", "3", "--budgets", "0.01,0.1"]
    runs = []
    for i in range(2):
        r = subprocess.run(args + ["--json", str(tmp_path / f"{i}.json")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(json.loads((tmp_path / f"{i}.json").read_text())["results"])
    assert runs[0] == runs[1]
    res = runs[0]
    assert set(res) == {"vlmscale", "random", "cheapest", "d_opt"}
    for method in res.values():
        assert set(method) == {"0.01", "0.1"}
        for cell in method.values():
            assert len(cell["per_seed"]) == 3 and -1 <= cell["mean"] <= 1 and cell["std"] >= 0
    assert res["vlmscale"]["0.01"]["mean"] == -1.0  # 1 % of a group's cost buys no run at all
    assert res["vlmscale"]["0.1"]["mean"] > 0.9

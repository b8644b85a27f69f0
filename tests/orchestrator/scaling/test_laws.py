"""Laws written as expressions (orchestrator/scaling/expression.py), fitted, designed and drawn as
the built-ins are: refusals in one line, recovery of known laws with more than two inputs, a
built-in written out as an expression, joint per-group parameters, several outputs, pools of any
inputs, the frontier with pinned inputs, the spec's fit.law."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from orchestrator.scaling.expression import ExpressionLaw, LawError
from orchestrator.scaling.fit import FitSettings, fit_inputs, fit_law
from orchestrator.scaling.forms import FORMS, predict
from orchestrator.scaling.grouped import GroupedLaw
from tests.support.experiments import ROOT, _cli, _finished_experiment

CHINCHILLA = {"E": [0, 5], "A": {"log_range": [1, 1e4]}, "alpha": [0, 2], "B": {"log_range": [1, 1e4]},
              "beta": [0, 2]}


@pytest.mark.parametrize("text, what", [
    ("E + open('x')", "calls open; the functions allowed are exp, log, sqrt, min, max"),
    ("E + A ^ 2", "^ (write ** for a power) is not allowed"),
    ("E + A.real", "an attribute is not allowed"),
    ("E if A else 1", "a conditional is not allowed"),
    ("E + (A < 2)", "a comparison is not allowed"),
    ("E + A[0]", "a subscript is not allowed"),
    ("E + (lambda: 1)()", "calls Lambda"),
    ("E + exp(A, A)", "exp() takes 1 argument"),
    ("E + max(A)", "max() takes two or more arguments"),
    ("E + exp(x=A)", "exp() takes no keyword arguments"),
    ("E +", "not an arithmetic expression"),
    ("E + 'a'", "a constant that is not a number is not allowed"),
    ("E + A % 2", "% is not allowed"),
    ("-(" * 70 + "E + A" + ")" * 70, "nested more than 64 deep"),
    ("E + " + " + ".join(["A"] * 400), "characters; a law has at most 1000"),
])
def test_a_refused_law_is_one_line_naming_what_is_not_allowed(text, what):
    with pytest.raises(LawError) as e:
        ExpressionLaw(text, {"E": [0, 1], "A": [0, 1]})
    assert what in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("params, what", [
    ({"E": [0, 1]}, "'A' is neither a declared parameter nor an input"),
    ({"E": [0, 1], "A": [0, 1], "Z": [0, 1]}, "params.Z: the law 'E + A * N' does not use it"),
    ({"E": [1, 0], "A": [0, 1]}, "params.E: a range must be two finite numbers [low, high] with low < high"),
    ({"E": [0, 1], "A": {"log_range": [-1, 1]}}, "params.A: a log_range must be positive"),
    ({"E": [0, 1], "A": {"bounds": [0, 1], "start": [0.5, 2]}}, "start [0.5, 2.0] must lie within bounds"),
    ({"E": [0, 1], "A": {"range": [0, 1]}}, "unknown key 'range'"),
    ({"E": [0, 1], "A": [0, float("inf")]}, "two finite numbers"),
])
def test_a_refused_parameter_is_one_line(params, what):
    with pytest.raises(LawError) as e:
        ExpressionLaw("E + A * N", params, inputs=("N",))
    assert what in str(e.value) and "\n" not in str(e.value)


def _chinchilla(rows=300, seed=0, noise=0.002):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), rows))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), rows))
    y = (1.69 + 406.4 / n ** 0.34 + 410.7 / d ** 0.28) * (1 + noise * rng.standard_normal(rows))
    return n, d, y


def test_an_expression_recovers_chinchillas_law_with_intervals():
    n, d, y = _chinchilla()
    law = ExpressionLaw("E + A / N**alpha + B / D**beta", CHINCHILLA, floor="E")
    assert law.inputs == ("N", "D") and law.params == ("E", "A", "alpha", "B", "beta")
    fit = fit_inputs(np.stack([n, d]), y, law, settings=FitSettings(bootstrap=200, kind="loss"))
    truth = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    for name, value in truth.items():
        assert abs(fit.params[name] - value) / value < 0.05, (name, fit.params)
    assert fit.ci["alpha"][0] < 0.34 < fit.ci["alpha"][1] and fit.ci["beta"][0] < 0.28 < fit.ci["beta"][1]
    assert fit.loo_rel_error < 0.005 and fit.r2 > 0.99


def test_a_three_input_law_recovers_its_truth():
    """The data-constrained shape: A/N^alpha + B/D^beta + E U^gamma N^delta, three inputs."""
    rng = np.random.default_rng(1)
    u, n, d = (np.exp(rng.uniform(np.log(lo), np.log(hi), 400)) for lo, hi in ((1e8, 1e11), (1e7, 1e10), (1e9, 1e12)))
    truth = {"A": 500.0, "alpha": 0.4, "B": 900.0, "beta": 0.3, "E": 2.0, "gamma": -0.02, "delta": 0.01}
    law = ExpressionLaw("A / N**alpha + B / D**beta + E * U**gamma * N**delta",
                        {"A": {"log_range": [1, 1e5]}, "alpha": [0.05, 2], "B": {"log_range": [1, 1e5]},
                         "beta": [0.05, 2], "E": [0, 20], "gamma": [-0.5, 0.5], "delta": [-0.5, 0.5]})
    y = law.predict(truth, n, d, u) if law.inputs == ("N", "D", "U") else None
    raw = np.stack([{"N": n, "D": d, "U": u}[name] for name in law.inputs])
    y = law.predict(truth, *raw) * (1 + 0.001 * rng.standard_normal(400))
    fit = fit_inputs(raw, y, law, settings=FitSettings(bootstrap=50, kind="loss"))
    assert fit.r2 > 0.999 and fit.loo_rel_error < 0.003
    for name in ("alpha", "beta"):
        assert abs(fit.params[name] - truth[name]) < 0.03, fit.params


def test_a_builtin_written_as_an_expression_finds_the_same_law():
    n = np.repeat([2e4, 8e4, 3e5, 1.2e6, 5e6], 6)
    v = np.tile([1, 4, 16, 36, 64, 144], 5).astype(float)
    e = predict("multiplicative", {"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15}, n, v)
    e = e * (1 + 0.003 * np.random.default_rng(0).standard_normal(len(e)))
    builtin = fit_law(n, v, e, settings=FitSettings(bootstrap=50))
    law = ExpressionLaw("a * N**-alpha * V**-beta + d", {"a": {"log_range": [0.1, 10]}, "alpha": [0, 3],
                                                        "beta": [0, 3], "d": [0, 1]}, floor="d")
    written = fit_inputs(np.stack([n, v]), e, law, settings=FitSettings(bootstrap=50))
    for name, value in builtin.params.items():
        assert written.params[name] == pytest.approx(value, rel=1e-5), name
    assert written.sse == pytest.approx(builtin.sse, rel=1e-6)


def test_parameters_per_group_are_fitted_jointly_with_the_rest_shared():
    n, d, y = _chinchilla(rows=240, seed=2)
    group = np.arange(240) % 2
    y = y + 0.4 * group  # the second data set's floor is 0.4 higher; everything else is one law
    base = ExpressionLaw("E + A / N**alpha + B / D**beta", CHINCHILLA, floor="E")
    law = GroupedLaw(base, ("E",), ("pile", "stack"), "data")
    assert law.params == ("A", "alpha", "B", "beta", "E[pile]", "E[stack]")
    fit = fit_inputs(np.vstack([n, d, group]), y, law, settings=FitSettings(bootstrap=50, kind="loss"))
    assert fit.params["E[stack]"] - fit.params["E[pile]"] == pytest.approx(0.4, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.34, abs=0.02) and fit.r2 > 0.999
    # the built-in forms take per-group parameters too
    builtin = GroupedLaw(FORMS["additive"], ("d",), ("pile", "stack"), "data")
    f2 = fit_inputs(np.vstack([n, d, group]), y, builtin, settings=FitSettings(bootstrap=20, kind="loss"))
    assert f2.params["d[stack]"] > f2.params["d[pile]"]


def _table(tmp_path):
    n, d, y = _chinchilla(rows=160, seed=3)
    df = pd.DataFrame({"N": n, "D": d, "loss": y, "data": np.where(np.arange(160) % 2, "stack", "pile")})
    df.loc[df["data"] == "stack", "loss"] += 0.4
    df["loss_2"] = df["loss"] * 1.1
    df.to_csv(tmp_path / "runs.csv", index=False)
    return df


LAW_ARGS = ["--law", "E + A/N**alpha + B/D**beta", "--param", "E=0,5", "--param", "A=log:1,1e4", "--param",
            "alpha=0,2", "--param", "B=log:1,1e4", "--param", "beta=0,2", "--floor", "E"]


def test_fit_cli_takes_a_law_groups_per_group_parameters_and_several_metrics(tmp_path):
    _table(tmp_path)
    r = _cli("fit", "runs.csv", *LAW_ARGS, "--metric", "loss", "--group", "data", "--per-group", "E",
             "--bootstrap", "30", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["params"]["E[stack]"] - doc["params"]["E[pile]"] == pytest.approx(0.4, abs=0.03)
    assert set(doc["params"]) == {"A", "alpha", "B", "beta", "E[pile]", "E[stack]"} and doc["frontier"] is None
    # one law per metric (and per group without --per-group)
    r = _cli("fit", "runs.csv", *LAW_ARGS, "--metric", "loss,loss_2", "--bootstrap", "20", "--format", "json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert set(groups) == {"loss", "loss_2"}
    r = _cli("fit", "runs.csv", *LAW_ARGS, "--metric", "loss", "--bootstrap", "20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "  loss = E + A/N**alpha + B/D**beta" in r.stdout  # the law, written with the metric's name
    # refusals: one line, exit 2
    for bad, what in ((["--law", "E + open(1)", "--param", "E=0,1"], "calls open"),
                      (["--law", "E + A/N", "--param", "E=0,1"], "the law names 'A', which is neither a declared "
                                                                 "parameter nor a column of runs.csv"),
                      (["--law", "E + A/X", "--param", "E=0,1", "--param", "A=0,1"], "names 'X', which is neither"),
                      (["--law", "E + A/N", "--param", "E=zero,1"], "--param 'E=zero,1': give NAME=LOW,HIGH")):
        r = _cli("fit", "runs.csv", *bad, "--bootstrap", "10", cwd=tmp_path)
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)


def test_a_law_from_a_yaml_file_and_a_pool_design_over_three_inputs(tmp_path):
    rng = np.random.default_rng(4)
    u, n, d = (np.exp(rng.uniform(np.log(lo), np.log(hi), 120)) for lo, hi in ((1e8, 1e11), (1e7, 1e10), (1e9, 1e12)))
    loss = 2.0 + 500 / n ** 0.4 + 900 / d ** 0.3 + 0.1 * (u / 1e9) ** -0.2
    pool = pd.DataFrame({"U": u, "N": n, "D": d, "loss": loss})
    pool.loc[pool.index[30:], "loss"] = np.nan  # 30 observed, 90 candidates
    pool.to_csv(tmp_path / "pool.csv", index=False)
    (tmp_path / "laws.yaml").write_text(yaml.safe_dump({"laws": {"dc": {
        "expression": "E + A/N**alpha + B/D**beta + C*U**gamma",
        "params": {"E": [0, 5], "A": {"log_range": [1, 1e4]}, "alpha": [0, 2], "B": {"log_range": [1, 1e4]},
                   "beta": [0, 2], "C": [0, 100], "gamma": [-1, 0]}, "floor": "E"}}}))
    args = ["propose", "--pool", "pool.csv", "--law", "laws.yaml:dc", "--metric", "loss", "--cost", "6*N*D",
            "--budget", "60%", "-k", "3", "--format", "csv"]
    first, again = (_cli(*args, "-o", f"next{i}.csv", cwd=tmp_path) for i in (1, 2))
    assert first.returncode == 0, first.stderr
    picked = pd.read_csv(tmp_path / "next1.csv")
    assert len(picked) == 3 and picked["loss"].isna().all()
    assert first.stdout == again.stdout  # deterministic
    r = _cli("fit", "pool.csv", "--law", "laws.yaml:nope", cwd=tmp_path)
    assert r.returncode == 2 and "holds no law named 'nope'" in r.stderr


def test_the_frontier_of_a_law_over_more_inputs_holds_them_at_given_values(tmp_path):
    """A results table with a third input (training samples seen): the law's frontier over N and V
    at --at train_samples=…, and a clear refusal without it."""
    rng = np.random.default_rng(5)
    n = np.repeat([2e4, 8e4, 3e5, 1.2e6], 12)
    v = np.tile(np.repeat([1, 4, 16, 64], 3), 4).astype(float)
    samples = np.tile([1e4, 4e4, 1.6e5], 16)
    error = 0.1 + 2.0 / n ** 0.2 + 0.3 / v ** 0.25 + 5.0 / samples ** 0.3
    pd.DataFrame({"cell": [f"c{i}" for i in range(48)], "llm_params": n, "visual_tokens": v,
                  "train_samples": samples, "error": error * (1 + 0.002 * rng.standard_normal(48))}
                 ).to_csv(tmp_path / "cells.csv", index=False)
    law = ["--law", "E + A/N**alpha + B/V**beta + C/train_samples**gamma", "--param", "E=0,0.5", "--param",
           "A=log:0.01,100", "--param", "alpha=0,2", "--param", "B=log:0.01,10", "--param", "beta=0,2",
           "--param", "C=log:0.01,100", "--param", "gamma=0,1", "--floor", "E"]
    r = _cli("fit", "cells.csv", *law, "--bootstrap", "20", cwd=tmp_path)
    assert r.returncode == 2 and "--at train_samples=VALUE" in r.stderr, r.stderr
    r = _cli("fit", "cells.csv", *law, "--at", "train_samples=1e5", "--bootstrap", "20", "--format", "json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["params"]["gamma"] == pytest.approx(0.3, abs=0.05)
    assert doc["frontier"]["points"] and set(doc["params"]) == {"E", "A", "alpha", "B", "beta", "C", "gamma"}


def test_the_spec_takes_a_law_and_refuses_a_bad_one_at_validate(tmp_path):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    del doc["spec"]["fit"]["form"]
    doc["spec"]["fit"]["law"] = {"expression": "E + A/N**alpha + B/V**beta",
                                 "params": {"E": [0, 0.5], "A": {"log_range": [0.01, 100]}, "alpha": [0, 2],
                                            "B": {"log_range": [0.01, 10]}, "beta": [0, 2]}, "floor": "E"}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(doc))
    assert _cli("validate", "ok.yaml", "--syntax-only", cwd=tmp_path).returncode == 0
    doc["spec"]["fit"]["law"]["expression"] = "E + A/N**alpha + B/V**beta + __import__('os')"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    r = _cli("validate", "bad.yaml", "--syntax-only", cwd=tmp_path)
    assert r.returncode == 2 and "spec.fit.law" in r.stderr and "calls __import__" in r.stderr
    doc["spec"]["fit"]["law"]["expression"] = "E + A/N**alpha + B/V**beta"
    doc["spec"]["fit"]["form"] = "additive"
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(doc))
    r = _cli("validate", "both.yaml", "--syntax-only", cwd=tmp_path)
    assert r.returncode == 2 and "give form (a built-in law) or law (an expression), not both" in r.stderr


def test_the_spec_law_fits_a_finished_experiment(tmp_path):
    spec = _finished_experiment(tmp_path)
    doc = yaml.safe_load(spec.read_text())
    del doc["spec"]["fit"]["form"]
    doc["spec"]["fit"]["law"] = {"expression": "E + A/N**alpha + B/V**beta",
                                 "params": {"E": [0, 0.5], "A": {"log_range": [0.01, 100]}, "alpha": [0, 2],
                                            "B": {"log_range": [0.01, 10]}, "beta": [0, 2]}, "floor": "E"}
    spec.write_text(yaml.safe_dump(doc))
    r = _cli("fit", str(spec), "--bootstrap", "20", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fit = json.loads(r.stdout)
    assert set(fit["params"]) == {"E", "A", "alpha", "B", "beta"} and fit["frontier"]["points"]
    assert fit["proposals"] is not None and fit["conclusion"]


def test_scalebench_runs_a_laws_file(tmp_path):
    """bench/scalebench.py --laws: every task of the file whose data is there (the two shared ones)."""
    shared = ROOT.parent / "shared" / "scalebench"
    if not (shared / "moe_scaling_law").is_dir():
        pytest.skip("needs ../shared/scalebench")
    out = tmp_path / "sb.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "scalebench.py"), "--laws",
                        str(ROOT / "bench" / "scalebench_laws.yaml"), "--root", str(shared), "--tasks",
                        "moe_scaling_law,parallel_scaling_law", "--seeds", "2", "--methods", "vlmscale,random",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    tasks = json.loads(out.read_text())["tasks"]
    assert set(tasks) == {"moe_scaling_law", "parallel_scaling_law"}
    assert tasks["moe_scaling_law"]["results"]["vlmscale"]["0.05"]["mean"] > 0.5
    assert tasks["parallel_scaling_law"]["results"]["vlmscale"]["0.1"]["mean"] > 0.8


def test_a_report_of_a_tables_law_draws_the_law_against_its_inputs(tmp_path):
    """No frontier for a law over N and D: the report still writes, one curve per binned N."""
    _table(tmp_path)
    r = _cli("report", "runs.csv", *LAW_ARGS, "--metric", "loss", "--bootstrap", "20", "-o", "rep", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "error_vs_tokens" in page and "loss = E + A/N**alpha + B/D**beta" in page
    r = _cli("report", "runs.csv", "--inputs", "N,D", "--metric", "loss", "--bootstrap", "20", "-o", "rep2",
             cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "rep2" / "error_vs_tokens.png").is_file(), r.stderr

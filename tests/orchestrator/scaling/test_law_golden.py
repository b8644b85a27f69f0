"""The built-in laws give the numbers they gave before laws became expressions:
fits (both forms, both losses), intervals, leave-one-out, the hold-out, the MAP fit, a table large
enough for little bootstraps and k-fold, the frontier, the frontier proposals and a pool design.
tests/fixtures/builtin_laws_golden.json was written by the code before the change.

"The last digit" holds on one machine; OpenBLAS picks its kernels by the CPU it finds (AVX2 or
AVX-512), which moves the last digits of a least-squares step, and a solver's stopping test turns
that into up to 5e-8 of a bootstrap bound (measured between two machines). Across machines the
numbers are held to 1e-6 relative, and counts, names and orders exactly: a change of method moves
them by far more."""

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.scaling.design import Candidate, DesignRequest, design_pool, propose_frontier
from orchestrator.scaling.fit import FitSettings, fit_law, fit_map
from orchestrator.scaling.forms import predict
from orchestrator.scaling.frontier import Domain, default_budgets, frontier

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "builtin_laws_golden.json"


def outputs() -> dict:
    out = {}
    N = np.repeat([2e4, 8e4, 3e5, 1.2e6, 5e6], 6)
    V = np.tile([1, 4, 16, 36, 64, 144], 5).astype(float)
    TRUE = {"multiplicative": {"a": 1.5, "alpha": 0.12, "beta": 0.06, "d": 0.15},
            "additive": {"A": 3.0, "alpha": 0.3, "B": 0.3, "beta": 0.4, "d": 0.2}}
    rng = np.random.default_rng(0)
    for form in TRUE:
        e = predict(form, TRUE[form], N, V) * (1 + 0.01 * rng.standard_normal(len(N)))
        for loss in ("squared", "huber_log"):
            f = fit_law(N, V, e, form=form, settings=FitSettings(loss=loss, bootstrap=200, seed=1))
            out[f"{form}/{loss}"] = {"params": f.params, "ci": {k: list(v) for k, v in f.ci.items()},
                                     "loo": f.loo_rel_error, "loo_max": f.loo_max_rel_error,
                                     "holdout": f.holdout_largest_rel_error, "objective": f.objective,
                                     "boot_sum": float(f.bootstrap.sum())}
        out[f"{form}/map"] = fit_map(N[:3], V[:3], e[:3], form, "squared", "error")
        # a large table: little bootstraps and k-fold
        n_big = np.exp(rng.uniform(np.log(1e4), np.log(1e7), 3000)); v_big = np.exp(rng.uniform(0, np.log(576), 3000))
        e_big = predict(form, TRUE[form], n_big, v_big) * (1 + 0.01 * rng.standard_normal(3000))
        f = fit_law(n_big, v_big, e_big, form=form, settings=FitSettings(bootstrap=100, seed=2))
        out[f"{form}/big"] = {"params": f.params, "ci": {k: list(v) for k, v in f.ci.items()}, "loo": f.loo_rel_error}
        fit = fit_law(N, V, predict(form, TRUE[form], N, V) * (1 + 0.01 * rng.standard_normal(len(N))), form=form, settings=FitSettings(bootstrap=100, seed=3))
        budgets = default_budgets((2e4, 5e6), (1, 144), 50.0)
        fr = frontier(fit, budgets, 50.0, domain=Domain(n_range=(2e4, 2e7), v_range=(1, 576), runnable=[(2e4, 1.0), (5e6, 16.0)], trained=list(zip(N, V))))
        out[f"{form}/frontier"] = fr.as_dict()
        cands = [Candidate(f"m{n:g}", n, v, "avgpool", 6 * n * (v + 12) * 1000) for n in (2e7, 5e6) for v in (4, 256, 576)]
        picks = propose_frontier(fit, cands, 3, budgets, 50.0, domain=Domain(n_range=(2e4, 2e7), v_range=(1, 576), trained=np.stack([N, V], 1)))
        out[f"{form}/picks"] = [(p.candidate.name, p.candidate.visual_tokens, p.score) for p in picks]
        y = predict(form, TRUE[form], N, V); y[::2] = np.nan
        out[f"{form}/pool"] = design_pool(form, np.stack([N, V]), y, N * V, kind="error", request=DesignRequest(k=4, budget=1e9, target=np.array([[5e6], [144.0]])))
    return json.loads(json.dumps(out, default=float))


def leaves(tree, path=""):
    """(path, value) of every number and string of a JSON tree, in order."""
    if isinstance(tree, dict):
        assert tree, path
        for k in sorted(tree):
            yield from leaves(tree[k], f"{path}/{k}")
    elif isinstance(tree, list):
        yield f"{path}#", len(tree)
        for i, v in enumerate(tree):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, tree


def test_builtin_laws_give_the_numbers_they_gave_before():
    want = list(leaves(json.loads(GOLDEN.read_text())))
    got = list(leaves(outputs()))
    assert [p for p, _ in got] == [p for p, _ in want]
    for (path, g), (_, w) in zip(got, want):
        if isinstance(w, float) and not isinstance(g, str):
            assert g == pytest.approx(w, rel=1e-6, abs=1e-300), path
        else:
            assert g == w, path

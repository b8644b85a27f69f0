"""ScaleBench's protocol on any task directory: how well does each proposer's law predict the
held-out target region after spending 1 %, 5 %, 10 % of the pool's cost?

    python bench/scalebench.py ../shared/scalebench/moe_scaling_law \\
        --inputs dense_parameter_count,num_experts --target loss_validation \\
        --cost 'dense_parameter_count*num_experts' --form multiplicative
    python bench/scalebench.py ../shared/scalebench/parallel_scaling_law \\
        --inputs num_params,parallel_size --target loss --cost num_params --form additive --group group

TASK_DIR holds ``train-*.parquet`` (the pool) and ``test-*.parquet`` (the target region). For each
group, the budget is a fraction of the group's pool cost; a proposer starts with nothing, picks
rows one at a time without exceeding the budget, sees each pick's target value, refits, goes on.
At the budget the law is fitted on the picked rows (least squares, or the engine's MAP fit while
the rows cannot identify it) and scored on the test rows of all groups pooled:
R² = 1 − SS_res/SS_tot, clipped to [−1, 1] (−1 when a group has no fit). Methods, in one run:

    vlmscale   the engine's design: target-region prediction variance removed per unit cost
    random     rows drawn uniformly (seeded) until the budget
    cheapest   cheapest rows first
    d_opt      greedy D-optimal (log det of the law's information) per unit cost

vlmscale, cheapest and d_opt are deterministic; seeds move random only (and the JSON's per-seed
lists show it). ``--json OUT`` writes {"results": {METHOD: {BUDGET: {"mean", "std", "per_seed"}}}}.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from orchestrator.scaling.design import design_pool, linearise  # noqa: E402
from orchestrator.scaling.fit import check_data, fit_map, fit_params  # noqa: E402
from orchestrator.scaling.forms import FORMS, FitError, predict, reference_point  # noqa: E402
from orchestrator.scaling.table import evaluate_cost  # noqa: E402

METHODS = ("vlmscale", "random", "cheapest", "d_opt")


@dataclass(frozen=True)
class Group:
    label: str
    x1: np.ndarray
    x2: np.ndarray
    y: np.ndarray  # the pool's true values, revealed when a row is picked
    cost: np.ndarray
    test_x: np.ndarray  # [m, 2]
    test_y: np.ndarray


def load_task(task_dir: Path, inputs: tuple[str, str], target: str, cost: str, group: str | None) -> list[Group]:
    def read(split: str) -> pd.DataFrame:
        files = sorted(glob.glob(str(task_dir / f"{split}-*.parquet")))
        if not files:
            raise SystemExit(f"{task_dir}: no {split}-*.parquet")
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    train, test = read("train"), read("test")
    out = []
    labels = [None] if group is None else list(dict.fromkeys(train[group]))
    for label in labels:
        tr = train if label is None else train[train[group] == label]
        te = test if label is None else test[test[group] == label]
        out.append(Group("all" if label is None else str(label), tr[inputs[0]].to_numpy(float),
                         tr[inputs[1]].to_numpy(float), tr[target].to_numpy(float),
                         evaluate_cost(tr, cost, str(task_dir)), te[list(inputs)].to_numpy(float),
                         te[target].to_numpy(float)))
    return out


def fit_for_prediction(form: str, x1, x2, y) -> dict[str, float]:
    """Least squares when the rows identify the law, the engine's MAP fit otherwise."""
    try:
        check_data(x1, x2, y, form, "loss")
        return fit_params(x1, x2, y, form, kind="loss")
    except FitError:
        return fit_map(x1, x2, y, form, kind="loss")


def _d_optimal_pick(form: str, g: Group, seen: np.ndarray, left: float) -> int | None:
    idx = np.flatnonzero(~seen & (g.cost <= left * (1 + 1e-12)))
    if not len(idx):
        return None
    reference = reference_point(np.concatenate([g.x1, g.test_x[:, 0]]), np.concatenate([g.x2, g.test_x[:, 1]]))
    obs_x1, obs_x2, obs_y = (g.x1[seen], g.x2[seen], g.y[seen]) if seen.any() else ([reference[0]], [reference[1]], [1.0])
    lin = linearise(form, obs_x1, obs_x2, obs_y, reference)
    info = np.linalg.pinv(lin.cov) * lin.noise  # JᵀJ + λI
    jc = lin.jac(g.x1[idx], g.x2[idx])
    base = np.linalg.slogdet(info)[1]
    gains = np.array([np.linalg.slogdet(info + np.outer(j, j))[1] - base for j in jc])
    return int(idx[int(np.argmax(gains / g.cost[idx]))])


def run_group(method: str, form: str, g: Group, fraction: float, seed: int) -> dict[str, float] | None:
    """Pick rows of one group sequentially within ``fraction`` of its pool cost; fit; return the law."""
    budget = fraction * g.cost.sum()
    seen = np.zeros(len(g.y), bool)
    spent = 0.0
    rng = np.random.default_rng([seed, 17])
    order = rng.permutation(len(g.y))
    while True:
        left = budget - spent
        if method == "vlmscale":
            y = np.where(seen, g.y, np.nan)
            picks = design_pool(form, g.x1, g.x2, y, g.cost, 1, left, target=g.test_x)
            pick = picks[0] if picks else None
        elif method == "random":
            pick = next((int(i) for i in order if not seen[i] and g.cost[i] <= left * (1 + 1e-12)), None)
        elif method == "cheapest":
            affordable = np.flatnonzero(~seen & (g.cost <= left * (1 + 1e-12)))
            pick = int(affordable[np.argmin(g.cost[affordable])]) if len(affordable) else None
        elif method == "d_opt":
            pick = _d_optimal_pick(form, g, seen, left)
        else:
            raise ValueError(method)
        if pick is None:
            break
        assert spent + g.cost[pick] <= budget * (1 + 1e-12), "over budget"
        seen[pick] = True
        spent += g.cost[pick]
    if not seen.any():
        return None
    try:
        return fit_for_prediction(form, g.x1[seen], g.x2[seen], g.y[seen])
    except FitError:
        return None


def score(form: str, groups: list[Group], laws: list[dict[str, float] | None]) -> float:
    """R² on the test rows of all groups pooled, clipped to [−1, 1]; −1 if a group has no law."""
    if any(law is None for law in laws):
        return -1.0
    pred = np.concatenate([predict(form, law, g.test_x[:, 0], g.test_x[:, 1]) for g, law in zip(groups, laws)])
    true = np.concatenate([g.test_y for g in groups])
    if not np.all(np.isfinite(pred)):
        return -1.0
    r2 = 1.0 - float(np.sum((pred - true) ** 2)) / float(np.sum((true - true.mean()) ** 2))
    return float(np.clip(r2, -1.0, 1.0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task_dir", type=Path)
    p.add_argument("--inputs", required=True, help="two input columns, e.g. num_params,parallel_size")
    p.add_argument("--target", required=True, help="the column the law predicts")
    p.add_argument("--cost", required=True, help="a cost column or expression over columns, e.g. 6*N*D")
    p.add_argument("--form", choices=sorted(FORMS), default="multiplicative")
    p.add_argument("--group", help="fit one law per value of this column; budgets per group")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budgets", default="0.01,0.05,0.1")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    inputs = tuple(a.inputs.split(","))
    groups = load_task(a.task_dir, inputs, a.target, a.cost, a.group)
    budget_labels = a.budgets.split(",")
    methods = a.methods.split(",")
    results: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for m in methods:
        for label in budget_labels:
            per_seed = [score(a.form, groups, [run_group(m, a.form, g, float(label), seed) for g in groups])
                        for seed in range(a.seeds)]
            results[m][label] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "per_seed": per_seed}
    print(f"{a.task_dir.name}: {a.form} law in {inputs[0]}, {inputs[1]} → {a.target}; cost {a.cost}; "
          f"{len(groups)} group(s); {a.seeds} seeds; R² on the target split (mean ± std)")
    print(f"{'method':>10} " + " ".join(f"{f'{float(b):.0%}':>14}" for b in budget_labels))
    for m in methods:
        print(f"{m:>10} " + " ".join(f"{results[m][b]['mean']:>+7.2f} ± {results[m][b]['std']:<4.2f}"
                                     for b in budget_labels))
    if a.json:
        a.json.write_text(json.dumps({"task": a.task_dir.name, "form": a.form, "inputs": list(inputs),
                                      "target": a.target, "cost": a.cost, "group": a.group, "results": results},
                                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ScaleBench's protocol on any task and any law: how well does each proposer's law predict the
held-out target region after spending a share of the pool's cost?

    # every task of a laws file whose data is under ROOT (ROOT/<task>/train-*.parquet, test-*.parquet)
    python bench/scalebench.py --laws bench/scalebench_laws.yaml --root ../shared/scalebench
    # one task, a built-in form or an expression
    python bench/scalebench.py ../shared/scalebench/moe_scaling_law \\
        --inputs dense_parameter_count,num_experts --target loss_validation \\
        --cost 'dense_parameter_count*num_experts' --form multiplicative
    python bench/scalebench.py TASK_DIR --inputs N,D --target loss --cost '6*N*D' \\
        --law 'E + A/N**alpha + B/D**beta' --param E=0,5 --param A=log:1,1e4 --param alpha=0,2 ...

For each group, the budget is a fraction of the group's pool cost; a proposer starts with nothing,
picks rows one at a time without exceeding the budget, sees each pick's target values (every
target of a multi-output task at once), refits, goes on. At the budget each target's law is
fitted on the picked rows (least squares, or the engine's MAP fit while the rows cannot identify
it) and scored on the test rows of all groups and targets pooled: R² = 1 − SS_res/SS_tot, clipped
to [−1, 1] (−1 when a fit fails). Methods, in one run:

    vlmscale   the engine's design: target-region prediction variance removed per unit cost
               (summed over the targets' laws)
    d_opt      greedy D-optimal (log det of the laws' information) per unit cost
    random     rows drawn uniformly (seeded) until the budget
    cheapest   cheapest rows first

vlmscale, cheapest and d_opt are deterministic; seeds move random only. ``--json OUT`` writes
{"tasks": {TASK: {"results": {METHOD: {BUDGET: {"mean", "std", "per_seed"}}}, "seconds": ...}}}.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from orchestrator.scaling.design import DesignRequest, design_pool_outputs, linearise  # noqa: E402
from orchestrator.scaling.expression import ExpressionLaw, check_expression, names_in  # noqa: E402
from orchestrator.scaling.fit import check_inputs, fit_inputs_params, fit_map_inputs  # noqa: E402
from orchestrator.scaling.forms import FORMS, FitError, LawForm, predict  # noqa: E402
from orchestrator.scaling.table import evaluate_cost  # noqa: E402

METHODS = ("vlmscale", "d_opt", "random", "cheapest")
KIND = "value"  # any number: a unigram-normalised loss may be negative


@dataclass(frozen=True)
class Group:
    label: str
    raw: np.ndarray  # [d, n] the pool's inputs
    ys: list[np.ndarray]  # the pool's true values per target, revealed when a row is picked
    cost: np.ndarray
    test_raw: np.ndarray  # [d, m]
    test_ys: list[np.ndarray]


@dataclass(frozen=True)
class Task:
    name: str
    laws: list[LawForm]  # one per target
    groups: list[Group]
    budgets: list[float]
    cost: str


def _read(task_dir: Path, split: str) -> pd.DataFrame:
    files = sorted(glob.glob(str(task_dir / f"{split}-*.parquet")))
    if not files:
        raise SystemExit(f"{task_dir}: no {split}-*.parquet")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def load_task(task_dir: Path, name: str, inputs: list[str], targets: list[str], laws: list[LawForm], cost: str,
              group: str | None, budgets: list[float], rename: dict[str, str] | None = None) -> Task:
    train, test = _read(task_dir, "train"), _read(task_dir, "test")
    costs = evaluate_cost(train, cost, str(task_dir))
    columns = [(rename or {}).get(c, c) for c in inputs]
    out = []
    labels = [None] if group is None else list(dict.fromkeys(train[group]))
    for label in labels:
        sel = np.ones(len(train), bool) if label is None else (train[group] == label).to_numpy()
        te = test if label is None else test[test[group] == label]
        tr = train[sel]
        out.append(Group("all" if label is None else str(label), tr[inputs].to_numpy(float).T,
                         [tr[t].to_numpy(float) for t in targets], costs[sel], te[inputs].to_numpy(float).T,
                         [te[t].to_numpy(float) for t in targets]))
    for law in laws:
        if not law.positional and set(law.inputs) - set(columns):
            raise SystemExit(f"{name}: the law reads {', '.join(law.inputs)}; the task's inputs are "
                             f"{', '.join(columns)} (rename them in the laws file)")
    laws = [law if law.positional else _ordered(law, columns) for law in laws]
    return Task(name, laws, out, budgets, cost)


def _ordered(law: LawForm, columns: list[str]) -> LawForm:
    """The law reading the task's input matrix: inputs in the task's order (unread ones ignored)."""
    return ExpressionLaw(law.expression, {s.name: _spec_doc(s) for s in law.specs}, law.floor, law.name,
                         inputs=tuple(columns))


def _spec_doc(s):
    if s.log:
        return {"log_range": list(s.start), "bounds": list(s.bounds)}
    return {"bounds": list(s.bounds), "start": list(s.start)}


def fit_for_prediction(law: LawForm, raw, y) -> dict[str, float]:
    """Least squares when the rows identify the law, the engine's MAP fit otherwise."""
    try:
        check_inputs(raw, y, law, KIND)
        return fit_inputs_params(raw, y, law, kind=KIND)
    except FitError:
        return fit_map_inputs(raw, y, law, kind=KIND)


def _d_optimal_pick(task: Task, g: Group, seen: np.ndarray, left: float) -> int | None:
    idx = np.flatnonzero(~seen & (g.cost <= left * (1 + 1e-12)))
    if not len(idx):
        return None
    points = np.concatenate([g.raw, g.test_raw], axis=1)
    gains = np.zeros(len(idx))
    for law, y in zip(task.laws, g.ys):
        reference = law.reference(points)
        if seen.any():
            lin = linearise(law, g.raw[:, seen], y[seen], reference, kind=KIND)
        else:
            centre = np.array(reference)[:, None] if reference is not None else np.median(points, axis=1)[:, None]
            lin = linearise(law, centre, np.array([1.0]), reference, kind=KIND)
        info = np.linalg.pinv(lin.cov) * lin.noise  # JᵀJ + λI
        jc = lin.jac(g.raw[:, idx])
        base = np.linalg.slogdet(info)[1]
        gains += np.array([np.linalg.slogdet(info + np.outer(j, j))[1] - base for j in jc])
    return int(idx[int(np.argmax(gains / g.cost[idx]))])


def run_group(method: str, task: Task, g: Group, fraction: float, seed: int) -> list[dict[str, float]] | None:
    """Pick rows of one group sequentially within ``fraction`` of its pool cost; fit; the laws."""
    budget = fraction * g.cost.sum()
    seen = np.zeros(g.raw.shape[1], bool)
    spent = 0.0
    order = np.random.default_rng([seed, 17]).permutation(len(seen))
    while True:
        left = budget - spent
        if method == "vlmscale":
            ys = [np.where(seen, y, np.nan) for y in g.ys]
            picks = design_pool_outputs(task.laws, g.raw, ys, g.cost, kind=KIND, request=DesignRequest(k=1, budget=left, target=g.test_raw))
            pick = picks[0] if picks else None
        elif method == "random":
            pick = next((int(i) for i in order if not seen[i] and g.cost[i] <= left * (1 + 1e-12)), None)
        elif method == "cheapest":
            affordable = np.flatnonzero(~seen & (g.cost <= left * (1 + 1e-12)))
            pick = int(affordable[np.argmin(g.cost[affordable])]) if len(affordable) else None
        elif method == "d_opt":
            pick = _d_optimal_pick(task, g, seen, left)
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
        return [fit_for_prediction(law, g.raw[:, seen], y[seen]) for law, y in zip(task.laws, g.ys)]
    except FitError:
        return None


def score(task: Task, fits: list[list[dict[str, float]] | None]) -> float:
    """R² on the test rows of every group and target pooled, clipped to [−1, 1]; −1 if a fit is missing."""
    if any(f is None for f in fits):
        return -1.0
    pred = np.concatenate([predict(law, p, *g.test_raw) for g, f in zip(task.groups, fits)
                           for law, p in zip(task.laws, f)])
    true = np.concatenate([y for g in task.groups for y in g.test_ys])
    if not np.all(np.isfinite(pred)):
        return -1.0
    r2 = 1.0 - float(np.sum((pred - true) ** 2)) / float(np.sum((true - true.mean()) ** 2))
    return float(np.clip(r2, -1.0, 1.0))


def run_task(task: Task, methods: list[str], seeds: int) -> dict:
    t0 = time.time()
    results: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for m in methods:
        for b in task.budgets:
            per_seed = [score(task, [run_group(m, task, g, b, seed) for g in task.groups])
                        for seed in (range(seeds) if m == "random" else [0])]
            per_seed = per_seed if m == "random" else per_seed * seeds  # deterministic: one run stands for all
            results[m][str(b)] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
                                  "per_seed": per_seed}
    return {"results": results, "seconds": time.time() - t0}


def print_task(task: Task, out: dict, methods: list[str], seeds: int) -> None:
    params = sum(len(law.params) for law in task.laws)
    print(f"\n{task.name}: {len(task.laws)} law(s), {params} parameters; cost {task.cost}; {len(task.groups)} "
          f"group(s); {seeds} seeds; R² on the target split (mean ± std); {out['seconds']:.0f} s")
    print(f"{'method':>10} " + " ".join(f"{f'{b:.0%}':>14}" for b in task.budgets))
    for m in methods:
        cells = out["results"][m]
        print(f"{m:>10} " + " ".join(f"{cells[str(b)]['mean']:>+7.2f} ± {cells[str(b)]['std']:<4.2f}"
                                     for b in task.budgets))


def law_of_doc(doc: dict, name: str) -> LawForm:
    if "form" in doc:
        return FORMS[doc["form"]]
    used = set(names_in(check_expression(doc["expression"])))  # a shared range block: take the names it uses
    params = {k: v for k, v in doc["params"].items() if k in used}
    return ExpressionLaw(doc["expression"], params, doc.get("floor"), name)


def tasks_from_file(path: Path, root: Path, only: list[str] | None) -> list[Task]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for name, t in doc["tasks"].items():
        if only and name not in only:
            continue
        if not (root / name).is_dir():
            print(f"{name}: no data under {root} (skipped)")
            continue
        laws = [law_of_doc(spec, f"{name}:{target}") for target, spec in t["targets"].items()]
        out.append(load_task(root / name, name, t["inputs"], list(t["targets"]), laws, t["cost"], t.get("group"),
                             [float(b) for b in t["budgets"]], t.get("rename")))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task_dir", type=Path, nargs="?")
    p.add_argument("--laws", type=Path, help="a laws file (bench/scalebench_laws.yaml): run its tasks")
    p.add_argument("--root", type=Path, help="with --laws: the folder holding the tasks' directories")
    p.add_argument("--tasks", help="with --laws: only these tasks (comma-separated)")
    p.add_argument("--inputs", help="input columns, e.g. num_params,parallel_size")
    p.add_argument("--target", help="the column(s) the law predicts")
    p.add_argument("--cost", help="a cost column or expression over columns, e.g. 6*N*D")
    p.add_argument("--form", choices=sorted(FORMS), default="multiplicative")
    p.add_argument("--law", help="an expression instead of --form (its inputs: the --inputs columns)")
    p.add_argument("--param", action="append", default=[], help="NAME=LO,HI or NAME=log:LO,HI")
    p.add_argument("--floor")
    p.add_argument("--group", help="fit one law per value of this column; budgets per group")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budgets", default="0.01,0.05,0.1")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    methods = a.methods.split(",")
    if a.laws:
        tasks = tasks_from_file(a.laws, a.root or ROOT.parent / "shared" / "scalebench",
                                a.tasks.split(",") if a.tasks else None)
    else:
        if not (a.task_dir and a.inputs and a.target and a.cost):
            p.error("give TASK_DIR --inputs --target --cost, or --laws FILE --root DIR")
        if a.law:
            from orchestrator.study.laws import param_from_cli

            law: LawForm = ExpressionLaw(a.law, dict(param_from_cli(x) for x in a.param), a.floor)
        else:
            law = FORMS[a.form]
        targets = a.target.split(",")
        tasks = [load_task(a.task_dir, a.task_dir.name, a.inputs.split(","), targets, [law] * len(targets), a.cost,
                           a.group, [float(b) for b in a.budgets.split(",")])]
    report = {}
    for task in tasks:
        out = run_task(task, methods, a.seeds)
        print_task(task, out, methods, a.seeds)
        report[task.name] = out
    if a.json:
        a.json.write_text(json.dumps({"tasks": report, **({"results": report[tasks[0].name]["results"]}
                                                         if len(tasks) == 1 else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

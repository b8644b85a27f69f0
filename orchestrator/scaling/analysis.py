"""From results to decisions: observations → fitted law → frontier → proposals → next.yaml.

The glue between the pure fitting core (fit, frontier, propose) and its sources (an experiment's
ledger or a CSV) and sinks (JSON, text, an experiment YAML). No Ray, torch or MLflow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from workloads.presets import LLM_PRESETS, is_llm_preset, llm_non_embedding_params
from workloads.token_rules import feasible_visual_tokens

from .fit import Fit, fit_law
from .forms import FORMS, METRIC_KINDS, metric_kind
from .cost import FlopsCost, MeasuredCost, OutsideTable, as_cost
from .frontier import Frontier, compare_frontiers, default_budgets, frontier
from .design import Candidate, Pick, propose_frontier, training_cost
from ..spec import Experiment, SpecError, cell_key
from .table import VLM_INPUTS, groups_of, load_table, numeric, require_columns

TRAIN_TEXT_TOKENS = 12.0  # a synthetic prompt + answer, for the training-cost estimate


@dataclass(frozen=True)
class Observations:
    keys: tuple[str, ...]
    llms: tuple[str, ...]
    compressors: tuple[str, ...]
    n: np.ndarray
    v: np.ndarray
    e: np.ndarray
    metric: str
    kind: str = "error"  # of the metric: an error rate in (0, 1) or a positive loss (fit.METRIC_KINDS)
    inputs: tuple[str, str] = VLM_INPUTS  # what n and v hold: the VLM's N and V, or any two columns

    @property
    def is_vlm(self) -> bool:
        """N and V of a VLM grid: the frontier and the experiment's proposals apply."""
        return self.inputs == VLM_INPUTS


def resolve_kind(metric: str, kind: str | None) -> str:
    """The metric's kind: as given, else read from its name (a loss if the name has "loss")."""
    kind = kind or metric_kind(metric)
    if kind not in METRIC_KINDS:
        raise SpecError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    return kind


def observations_from_rows(rows: list[dict[str, Any]], metric: str = "error", kind: str | None = None) -> Observations:
    done = [r for r in rows if r.get("status") == "finished" and r.get(metric) is not None]
    return Observations(tuple(r["cell"] for r in done), tuple(r["llm"] for r in done),
                        tuple(r["compressor"] for r in done),
                        np.array([float(r["llm_params"]) for r in done]), np.array([float(r["visual_tokens"]) for r in done]),
                        np.array([float(r[metric]) for r in done]), metric, resolve_kind(metric, kind))


def observations_from_table(df, source: str, metric: str = "error", kind: str | None = None,
                            inputs: tuple[str, str] = VLM_INPUTS) -> Observations:
    """Rows of a table (a results CSV, a pool with observed values) whose metric is known and whose
    ``status``, if any, is finished."""
    require_columns(df, [*inputs, metric], source)
    if "status" in df.columns:
        df = df[df["status"].isna() | df["status"].isin(["", "finished"])]
    df = df[df[metric].notna()]
    values = numeric(df, [*inputs, metric], source)
    names = [str(x) for x in df.get("llm", df[inputs[0]].map(lambda x: f"{inputs[0]}={x:g}"))]
    keys = [str(x) for x in df["cell"]] if "cell" in df.columns else [f"row{i + 1}" for i in range(len(df))]
    comps = [str(x) for x in df["compressor"]] if "compressor" in df.columns else ["unknown"] * len(df)
    return Observations(tuple(keys), tuple(names), tuple(comps), values[inputs[0]], values[inputs[1]],
                        values[metric], metric, resolve_kind(metric, kind), tuple(inputs))


def observations_from_csv(path: str | Path, metric: str = "error", kind: str | None = None,
                          inputs: tuple[str, str] = VLM_INPUTS) -> Observations:
    return observations_from_table(load_table(path), str(path), metric, kind, inputs)


@dataclass(frozen=True)
class Analysis:
    observations: Observations
    fit: Fit
    frontier: Frontier | None
    picks: tuple[Pick, ...]
    candidates: tuple[Candidate, ...]
    # the frontier under other cost models (e.g. FLOPs beside measured latency), each with how it
    # compares to the first: what the report draws side by side
    alternatives: tuple[tuple[Frontier, dict[str, Any]], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        f = self.fit
        return {
            "form": f.form, "loss": f.loss, "metric": self.observations.metric, "metric_kind": f.kind,
            "n_points": f.n_points, "params": f.params, "ci": {k: list(v) for k, v in f.ci.items()},
            "ci_level": f.ci_level, "objective": f.objective, "rmse": f.rmse, "r2": f.r2, "loo_rel_error": f.loo_rel_error, "loo_max_rel_error": f.loo_max_rel_error,
            "holdout_largest_rel_error": f.holdout_largest_rel_error, "bootstrap": len(f.bootstrap),
            "inputs": list(self.observations.inputs),
            "frontier": self.frontier.as_dict() if self.frontier is not None else None,
            "other_frontiers": [{**fr.as_dict(), "comparison": cmp} for fr, cmp in self.alternatives],
            "proposals": [{"llm": p.candidate.llm, "llm_params": p.candidate.n, "visual_tokens": p.candidate.visual_tokens,
                           "compressor": p.candidate.compressor, "training_cost": p.candidate.cost,
                           "reason": p.reason} for p in self.picks],
        }


def candidates_for(exp: Experiment, obs: Observations) -> list[Candidate]:
    """LLM sizes the user can run × feasible V × the grid's compressors, minus what is done.

    Sizes: the grid's LLMs (sizes of hub models come from their results) and, when the grid uses
    tiny presets, every preset of the family.
    """
    grid = exp.spec.grid
    combos = grid.combinations()
    llms = list(dict.fromkeys(c[0] for c in combos))
    sizes: dict[str, float] = {llm: float(n) for llm, n in zip(obs.llms, obs.n)}
    if any(m in LLM_PRESETS for m in llms):  # the tiny family: offer every size of it
        llms += [m for m in LLM_PRESETS if m not in llms]
    for m in llms:
        if m not in sizes and is_llm_preset(m):
            sizes[m] = float(llm_non_embedding_params(m))
    patch_grid = exp.spec.vision.grid()
    vs = sorted({c[1] for c in combos})
    done = {(llm, int(v), comp) for llm, v, comp in zip(obs.llms, obs.v, obs.compressors)}
    samples = exp.spec.training.steps * exp.spec.training.batch_size
    out = []
    for comp in list(dict.fromkeys(c[2] for c in combos)):
        feasible = feasible_visual_tokens(comp, patch_grid, limit=max(vs)) if patch_grid else vs
        for m in llms:
            if m not in sizes:
                continue
            for v in feasible:
                if (m, v, comp) not in done:
                    out.append(Candidate(m, sizes[m], v, comp, training_cost(sizes[m], v, TRAIN_TEXT_TOKENS, samples)))
    return out


def experiment_candidates(exp: Experiment, obs: Observations, table: list[dict[str, Any]]) -> list[Candidate]:
    """What the experiment could run next: :func:`candidates_for` minus every cell it already
    has, finished or not (any round) — the one candidate set of the run's summary, ``fit``,
    ``propose`` and ``report``."""
    planned = {(r["llm"], int(r["visual_tokens"]), r["compressor"]) for r in table}
    return [c for c in candidates_for(exp, obs) if (c.llm, c.visual_tokens, c.compressor) not in planned]


def analyze(obs: Observations, form: str = "multiplicative", loss: str = "squared", text_tokens: float = 0.0,
            bootstrap: int = 1000, seed: int = 0, candidates: list[Candidate] | None = None, k: int = 0,
            budget: float | None = None, ci_level: float = 0.9, cross_validate: bool = True,
            cost: FlopsCost | MeasuredCost | None = None,
            compare: tuple[FlopsCost | MeasuredCost, ...] = ()) -> Analysis:
    """Fit, frontier under ``cost`` (default: FLOPs with Q = ``text_tokens``), proposals; and the
    frontier under each cost model of ``compare``, matched against the first (see compare_frontiers)."""
    fit = fit_law(obs.n, obs.v, obs.e, form=form, loss=loss, bootstrap=bootstrap, seed=seed, ci_level=ci_level,
                  cross_validate=cross_validate, kind=obs.kind)
    if not obs.is_vlm:  # any two inputs: the law alone (the frontier is a VLM's N-versus-V trade-off)
        return Analysis(obs, fit, None, (), ())
    cands = candidates or []
    model = as_cost(text_tokens if cost is None else cost)
    ns = list(obs.n) + [c.n for c in cands]
    vs = list(obs.v) + [c.visual_tokens for c in cands]
    n_range, v_range = _ranges(model, (min(ns), max(ns)), (min(vs), max(vs)), obs)
    budgets = default_budgets(n_range, v_range, model)
    runnable = sorted({(float(a), float(b)) for a, b in zip(ns, vs)})
    trained = list(zip(obs.n.tolist(), obs.v.tolist()))
    front = frontier(fit, budgets, model, n_range, v_range, runnable=runnable, trained=trained)
    picks: list[Pick] = []
    if k and cands and len(fit.bootstrap) >= 10:
        picks = propose_frontier(fit, cands, k, budgets, model, n_range, v_range, budget=budget,
                                 done_nv=np.stack([obs.n, obs.v], axis=1))
    others = []
    for other in compare:
        try:
            o_n, o_v = _ranges(other, (min(ns), max(ns)), (min(vs), max(vs)), obs)
        except OutsideTable:  # profiled elsewhere than trained: nothing to draw beside this frontier
            continue
        o_front = frontier(fit, default_budgets(o_n, o_v, other), other, o_n, o_v, runnable=runnable, trained=trained)
        others.append((o_front, compare_frontiers(fit, front, model, other, o_n, o_v)))
    return Analysis(obs, fit, front, tuple(picks), tuple(cands), tuple(others))


def _ranges(model, n_range, v_range, obs: Observations):
    """The N and V the frontier searches: what can be run, within what a measured cost model can
    price. The trained cells must lie within it: a law fitted where the cost is unknown is refused."""
    if not isinstance(model, MeasuredCost):
        return n_range, v_range
    (n_lo, n_hi), (v_lo, v_hi) = model.bounds()
    model(obs.n, obs.v)  # OutsideTable when a trained cell is too far outside the profile
    return (max(n_range[0], n_lo), min(n_range[1], n_hi)), (max(v_range[0], v_lo), min(v_range[1], v_hi))


def next_spec(exp: Experiment, spec_doc: dict[str, Any], obs: Observations, picks: list[Pick]) -> str:
    """The experiment extended by the picks, as ready-to-run YAML: same name and storage, so the
    finished cells are skipped and the new ones train; each new point carries its reason."""
    grid = exp.spec.grid
    doc = yaml.safe_load(yaml.safe_dump(spec_doc))
    g = doc["spec"]["grid"]
    for axis in ("llms", "visual_tokens", "points"):
        g.pop(axis, None)
    compressors = list(dict.fromkeys(list(grid.compressors) + [p.candidate.compressor for p in picks]))
    g["compressors"] = compressors
    head = yaml.safe_dump(doc, sort_keys=False).rstrip("\n").splitlines()
    lines = []
    for llm, v, comp, task, seed in grid.combinations():
        lines.append(f"      - {{llm: {llm}, visual_tokens: {v}, compressor: {comp}, task: {task}, seed: {seed}}}")
    task, seed = grid.tasks[0], grid.seeds[0]
    for p in picks:
        c = p.candidate
        lines.append(f"      - {{llm: {c.llm}, visual_tokens: {c.visual_tokens}, compressor: {c.compressor}, "
                     f"task: {task}, seed: {seed}}}  # proposed: {p.reason}")
    out, inserted = [], False
    for line in head:
        out.append(line)
        if line.strip() == "grid:" and not inserted:
            out.append("    points:")
            out.extend(lines)
            inserted = True
    text = "# Proposed by `vlmscale propose`: the finished cells plus the next most informative ones.\n" \
           + "\n".join(out) + "\n"
    from ..spec import parse

    parse(yaml.safe_load(text), "next.yaml")  # what we write must validate
    return text


def format_analysis(a: Analysis) -> str:
    f, fr = a.fit, a.frontier
    unit = "cells" if a.observations.is_vlm else "runs"
    lines = [f"law ({f.form}, {f.loss} loss, {f.n_points} {unit}, metric {a.observations.metric} [{f.kind}]):"]
    o = a.observations
    equation = FORMS[f.form].equation.replace("error", o.metric, 1)
    if not o.is_vlm:
        equation = equation.replace("N^", f"{o.inputs[0]}^").replace("V^", f"{o.inputs[1]}^")
    lines.append("  " + equation)
    level = int(round(100 * f.ci_level))
    for name, value in f.params.items():
        lo, hi = f.ci[name]
        lines.append(f"  {name:>6} = {value:<10.4g} {level}% CI [{lo:.4g}, {hi:.4g}]")
    loo = "n/a" if f.loo_rel_error is None else f"{100 * f.loo_rel_error:.1f}% (max {100 * f.loo_max_rel_error:.1f}%)"
    hold = "n/a" if f.holdout_largest_rel_error is None else f"{100 * f.holdout_largest_rel_error:.1f}%"
    lines.append(f"  RMSE {f.rmse:.3g} ({a.observations.metric} units), R² {f.r2:.3f}, {f.loss} objective {f.objective:.3g}")
    lines.append(f"  leave-one-out relative error {loo}; largest {o.inputs[0] if not o.is_vlm else 'LLM'} held out {hold}")
    if fr is None:
        return "\n".join(lines)
    if fr.optimal_visual_tokens is not None:
        ci = fr.optimal_visual_tokens_ci
        ci_txt = f" ({level}% CI [{ci[0]:.3g}, {ci[1]:.3g}])" if ci else ""
        lines.append(f"frontier (Q = {fr.text_tokens:g} text tokens): optimal visual tokens V* = "
                     f"{fr.optimal_visual_tokens:.3g}{ci_txt}")
    elif fr.cost != "flops":
        lines.append(f"frontier under {fr.cost_label}, interpolated from `vlmscale profile`:")
    budget = f"budget {fr.cost_unit}"
    lines.append(f"  {budget:>13} {'N*':>10} {'V*':>7} {a.observations.metric[:7]:>7}  {'best runnable (N, V)':<24}")
    for p in fr.points:
        run = "-" if p.discrete is None else (f"({p.discrete[0]:.3g}, {p.discrete[1]:g})"
                                               + (" trained" if p.discrete_trained else " untrained"))
        mark = "*" if p.extrapolated else " "
        lines.append(f"  {p.budget:>13.3g} {p.n:>10.3g} {p.v:>7.3g} {p.error:>7.4f}{mark} {run:<24}")
    if any(p.extrapolated for p in fr.points):
        lines.append("  * extrapolated: N* or V* beyond the trained cells (a prediction, not a measurement)")
    for other, cmp in a.alternatives:
        lines.append(("differs — " if cmp["disagree"] else "") + cmp["sentence"])
    if a.picks:
        lines.append(f"next {len(a.picks)} runs (most frontier uncertainty removed per training FLOP):")
        for p in a.picks:
            c = p.candidate
            lines.append(f"  {cell_key(c.llm, c.visual_tokens, c.compressor, 'x', 0).rsplit('-x-', 1)[0]:<28} {p.reason}")
    return "\n".join(lines)


def nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def load_source(source: str, metric: str = "error", storage: str | None = None, kind: str | None = None,
                inputs: tuple[str, str] = VLM_INPUTS, group: str | None = None):
    """(experiment or None, its spec document or None, [(group label, observations)]) from an
    experiment's name or spec file (one group), or a CSV/Parquet table (one group per ``group`` value)."""
    if source.endswith(TABLE_SUFFIXES):
        df = load_table(source)
        return None, None, [(label, observations_from_table(rows, source, metric, kind, inputs))
                            for label, rows in groups_of(df, group, source)]
    if inputs != VLM_INPUTS or group is not None:
        raise SpecError("--inputs and --group apply to a table (CSV or Parquet); an experiment's inputs are N and V")
    import json

    from ..results import locate, rows

    exp, exp_dir = locate(source, storage)
    if exp_dir.manifest.is_file():
        manifest = json.loads(exp_dir.manifest.read_text())
        spec_doc = yaml.safe_load(manifest["spec_yaml"]) if "spec_yaml" in manifest else manifest["spec"]
    else:
        spec_doc = yaml.safe_load(Path(source).read_text())
    return exp, spec_doc, [("all", observations_from_rows(rows(exp, exp_dir), metric, kind))]

"""From observations to decisions: observations → fitted law → frontier → proposals, and their
text and JSON. Takes tables (rows, a DataFrame) and settings; knows nothing of an experiment's
storage (orchestrator/study/proposals.py turns a ledger into observations and candidates). No Ray, torch
or MLflow here.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cost import CostModel, OutsideTable, as_cost
from .design import Candidate, Pick, ProposalRequest, propose_frontier
from .fit import Fit, FitSettings, fit_inputs
from .forms import METRIC_KINDS, FitError, metric_kind
from .forms import law as law_of
from .frontier import Domain, Frontier, compare_frontiers, default_budgets, frontier
from .pinned import PinnedLaw, nv_slots
from .table import VLM_INPUTS, groups_of, load_table, numeric, require_columns


@dataclass(frozen=True)
class Observations:
    keys: tuple[str, ...]
    llms: tuple[str, ...]
    compressors: tuple[str, ...]
    n: np.ndarray
    v: np.ndarray
    e: np.ndarray
    metric: str
    kind: str = "error"  # of the metric: an error rate in [0, 1] or a positive loss (forms.METRIC_KINDS)
    inputs: tuple[str, ...] = VLM_INPUTS  # what n and v hold: the VLM's N and V, or any two columns (one for a one-input law)
    columns: dict = field(default_factory=dict, repr=False)  # every numeric column, by name (laws read theirs)
    source: str = "the data"
    group_labels: tuple[str, ...] = ()  # a joint fit's groups, in the order of their codes in columns
    n_means: str = ""  # what N counts, in words (an experiment's spec.fit.parameters; "" for a table's column)

    @property
    def is_vlm(self) -> bool:
        """N and V of a VLM grid: the frontier and the experiment's proposals apply."""
        return self.inputs == VLM_INPUTS

    def raw_for(self, law) -> np.ndarray:
        """The inputs ``law`` reads, [d, n]: the two columns of ``inputs`` for a built-in form, the
        columns its expression names otherwise (N and V also answer to llm_params and visual_tokens)."""
        if law.positional:
            return np.stack([self.n, self.v])
        aliases = {"N": self.n, "V": self.v} if self.is_vlm else {}
        rows = []
        for name in law.inputs:
            column = self.columns.get(name, aliases.get(name))
            if column is None:
                have = ", ".join(sorted(self.columns)) or "none"
                raise FitError(f"the law's input {name!r} is not a column of {self.source} (numeric columns: {have})")
            rows.append(np.asarray(column, float))
        return np.stack(rows)


def resolve_kind(metric: str, kind: str | None) -> str:
    """The metric's kind: as given, else read from its name (a loss if the name has "loss")."""
    kind = kind or metric_kind(metric)
    if kind not in METRIC_KINDS:
        raise FitError(f"unknown metric kind {kind!r}; choose one of {', '.join(METRIC_KINDS)}")
    return kind


def observations_from_rows(rows: list[dict[str, Any]], metric: str = "error", kind: str | None = None,
                           n_means: str = Observations.n_means) -> Observations:
    """The finished cells whose metric and N are known; ``n_means``: what their ``llm_params`` counts."""
    done = [r for r in rows if r.get("status") == "finished" and r.get(metric) is not None
            and r.get("llm_params") is not None]
    columns = {name: np.array([float(r[name]) for r in done]) for name in (done[0] if done else {})
               if all(_is_number(r.get(name)) for r in done)}
    return Observations(tuple(r["cell"] for r in done), tuple(r["llm"] for r in done),
                        tuple(r["compressor"] for r in done),
                        np.array([float(r["llm_params"]) for r in done]), np.array([float(r["visual_tokens"]) for r in done]),
                        np.array([float(r[metric]) for r in done]), metric, resolve_kind(metric, kind),
                        columns=columns, source="the experiment's cells", n_means=n_means)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


ALIASES = {"N": VLM_INPUTS[0], "V": VLM_INPUTS[1]}  # a law's N and V read a results table's columns


def observations_from_table(df, source: str, metric: str = "error", kind: str | None = None,
                            inputs: tuple[str, ...] = VLM_INPUTS, group: str | None = None) -> Observations:
    """Rows of a table (a results CSV, a pool with observed values) whose metric is known and whose
    ``status``, if any, is finished. ``inputs``: the columns a law reads (N and V may name
    llm_params and visual_tokens); the first two are the observations' n and v. ``group``: a
    column kept as codes 0, 1, … in order of first appearance (a joint fit's group index)."""
    inputs = tuple(ALIASES.get(c, c) if c not in df.columns else c for c in inputs)
    require_columns(df, [*inputs, metric], source)
    if "status" in df.columns:
        df = df[df["status"].isna() | df["status"].isin(["", "finished"])]
    df = df[df[metric].notna()]
    values = numeric(df, [*inputs, metric], source)
    names = [str(x) for x in df.get("llm", df[inputs[0]].map(lambda x: f"{inputs[0]}={x:g}"))]
    keys = [str(x) for x in df["cell"]] if "cell" in df.columns else [f"row{i + 1}" for i in range(len(df))]
    comps = [str(x) for x in df["compressor"]] if "compressor" in df.columns else ["unknown"] * len(df)
    columns = dict(values)
    for alias, column in ALIASES.items():
        if column in columns:
            columns.setdefault(alias, columns[column])
    labels: list[str] = []
    if group is not None:
        require_columns(df, [group], source)
        labels = list(dict.fromkeys(str(x) for x in df[group]))
        columns[group] = np.array([labels.index(str(x)) for x in df[group]], float)
    second = values[inputs[1]] if len(inputs) > 1 else np.ones(len(df))
    return Observations(tuple(keys), tuple(names), tuple(comps), values[inputs[0]], second,
                        values[metric], metric, resolve_kind(metric, kind), tuple(inputs[:2]), columns, source,
                        tuple(labels))


def observations_from_csv(path: str | Path, metric: str = "error", kind: str | None = None,
                          inputs: tuple[str, ...] = VLM_INPUTS) -> Observations:
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
            "bootstrap_subset": f.subset, "folds": f.folds, "points_at_bound": f.at_bound,
            "inputs": list(self.observations.inputs),
            **({"n_means": self.observations.n_means} if self.observations.n_means else {}),
            "frontier": self.frontier.as_dict() if self.frontier is not None else None,
            "other_frontiers": [{**fr.as_dict(), "comparison": cmp} for fr, cmp in self.alternatives],
            "proposals": [{"llm": p.candidate.llm, "llm_params": p.candidate.n, "visual_tokens": p.candidate.visual_tokens,
                           "compressor": p.candidate.compressor, "training_cost": p.candidate.cost,
                           "reason": p.reason} for p in self.picks],
            "conclusion": list(self.conclusion.sentences),
        }

    @property
    def conclusion(self):
        """What this analysis establishes, in words (scaling/conclusion.py)."""
        from .conclusion import conclude

        return conclude(self)


def analyze(obs: Observations, form="multiplicative", settings: FitSettings = FitSettings(), text_tokens: float = 0.0,
            proposals: ProposalRequest | None = None, cost: CostModel | None = None,
            compare: tuple[CostModel, ...] = (), at: dict[str, float] | None = None) -> Analysis:
    """Fit (``settings``, the metric's kind the observations'), frontier under ``cost`` (default:
    FLOPs with Q = ``text_tokens``), ``proposals``; and the frontier under each cost model of
    ``compare``, matched against the first (see compare_frontiers). ``form``: a built-in law's name
    or any law (an expression); a law over more inputs than N and V has its frontier with the
    others held at ``at`` (scaling/pinned.py)."""
    law = law_of(form)
    fit = fit_inputs(obs.raw_for(law), obs.e, law, dataclasses.replace(settings, kind=obs.kind))
    if not obs.is_vlm or nv_slots(law) is None:  # the frontier is a VLM's N-versus-V trade-off
        return Analysis(obs, fit, None, (), ())
    if not law.positional:  # the law as a function of N and V, the rest pinned: what frontier and design see
        fit = dataclasses.replace(fit, law_obj=PinnedLaw(law, at or {}))
    cands = proposals.candidates if proposals is not None else []
    model = as_cost(text_tokens if cost is None else cost)
    ns = list(obs.n) + [c.n for c in cands]
    vs = list(obs.v) + [c.visual_tokens for c in cands]
    n_range, v_range = _ranges(model, (min(ns), max(ns)), (min(vs), max(vs)), obs)
    budgets = default_budgets(n_range, v_range, model)
    runnable = sorted({(float(a), float(b)) for a, b in zip(ns, vs)})
    trained = list(zip(obs.n.tolist(), obs.v.tolist()))
    domain = Domain(n_range, v_range, runnable=runnable, trained=trained)
    front = frontier(fit, budgets, model, domain)
    picks: list[Pick] = []
    if proposals is not None and proposals.k and cands and len(fit.bootstrap) >= 10:
        picks = propose_frontier(fit, cands, proposals.k, budgets, model, domain, budget=proposals.budget)
    others = []
    for other in compare:
        try:
            o_n, o_v = _ranges(other, (min(ns), max(ns)), (min(vs), max(vs)), obs)
        except OutsideTable:  # profiled elsewhere than trained: nothing to draw beside this frontier
            continue
        o_front = frontier(fit, default_budgets(o_n, o_v, other), other, Domain(o_n, o_v, runnable, trained))
        others.append((o_front, compare_frontiers(fit, front, model, other, o_n, o_v)))
    return Analysis(obs, fit, front, tuple(picks), tuple(cands), tuple(others))


def _ranges(model: CostModel, n_range, v_range, obs: Observations):
    """The N and V the frontier searches: what can be run, within what the cost model can price.
    The trained cells must lie within it: a law fitted where the cost is unknown is refused."""
    (n_lo, n_hi), (v_lo, v_hi) = model.bounds()
    model(obs.n, obs.v)  # OutsideTable when a trained cell is too far outside a measured profile
    return (max(n_range[0], n_lo), min(n_range[1], n_hi)), (max(v_range[0], v_lo), min(v_range[1], v_hi))


def format_analysis(a: Analysis) -> str:
    f, fr = a.fit, a.frontier
    unit = "cells" if a.observations.is_vlm else "runs"
    lines = [f"law ({f.form}, {f.loss} loss, {f.n_points} {unit}, metric {a.observations.metric} [{f.kind}]):"]
    o = a.observations
    equation = f.law.equation.replace("error", o.metric, 1).replace("y = ", f"{o.metric} = ", 1)
    if not o.is_vlm:
        equation = equation.replace("N^", f"{o.inputs[0]}^").replace("V^", f"{o.inputs[1]}^")
    lines.append("  " + equation + (f"   (N: {o.n_means})" if o.n_means else ""))
    level = int(round(100 * f.ci_level))
    for name, value in f.params.items():
        lo, hi = f.ci[name]
        lines.append(f"  {name:>6} = {value:<10.4g} {level}% CI [{lo:.4g}, {hi:.4g}]")
    loo = "n/a" if f.loo_rel_error is None else f"{100 * f.loo_rel_error:.1f}% (max {100 * (f.loo_max_rel_error or 0):.1f}%)"
    hold = "n/a" if f.holdout_largest_rel_error is None else f"{100 * f.holdout_largest_rel_error:.1f}%"
    lines.append(f"  RMSE {f.rmse:.3g} ({a.observations.metric} units), R² {f.r2:.3f}, {f.loss} objective {f.objective:.3g}")
    cv = "leave-one-out" if f.folds in (0, f.n_points) else f"{f.folds}-fold"
    lines.append(f"  {cv} relative error {loo}; largest {o.inputs[0] if not o.is_vlm else 'LLM'} held out {hold}")
    if f.subset < f.n_points and len(f.bootstrap):
        lines.append(f"  intervals: bag of little bootstraps ({len(f.bootstrap)} replicates over subsets of "
                     f"{f.subset} of the {f.n_points} {unit})")
    if f.at_bound:
        lines.append(f"  {f.at_bound} of {f.n_points} {unit} at a bound of the {f.kind} range (exactly 0 or 1): "
                     "fitted as observations")
    if fr is None:
        return "\n".join(lines)
    if fr.optimal_visual_tokens is not None:
        ci = fr.optimal_visual_tokens_ci
        ci_txt = f" ({level}% CI [{ci[0]:.3g}, {ci[1]:.3g}])" if ci else ""
        lines.append(f"frontier under {fr.cost_label}: optimal visual tokens V* = "
                     f"{fr.optimal_visual_tokens:.3g}{ci_txt}")
    elif fr.cost != "flops":
        lines.append(f"frontier under {fr.cost_label}, interpolated from `vlmscale profile`:")
    budget = f"budget {fr.cost_unit}" if fr.cost != "flops" else "budget LLM FLOPs"
    lines.append(f"  {budget:>16} {'N*':>10} {'V*':>7} {a.observations.metric[:7]:>7}  {'best runnable (N, V)':<24}")
    for p in fr.points:
        run = "-" if p.discrete is None else (f"({p.discrete[0]:.3g}, {p.discrete[1]:g})"
                                               + (" trained" if p.discrete_trained else " untrained"))
        mark = "*" if p.extrapolated else " "
        lines.append(f"  {p.budget:>16.3g} {p.n:>10.3g} {p.v:>7.3g} {p.error:>7.4f}{mark} {run:<24}")
    if any(p.extrapolated for p in fr.points):
        lines.append("  * extrapolated: N* or V* beyond the trained cells (a prediction, not a measurement)")
    for _other, cmp in a.alternatives:
        lines.append(("differs — " if cmp["disagree"] else "") + cmp["sentence"])
    if a.picks:
        lines.append(f"next {len(a.picks)} runs (most frontier uncertainty removed per training FLOP):")
        for pick in a.picks:
            lines.append(f"  {pick.candidate.name:<28} {pick.reason}")
    lines.append("conclusion:")
    lines += [textwrap.fill(s, 108, initial_indent="  ", subsequent_indent="    ") for s in a.conclusion.sentences]
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


def table_groups(source: str, metric: str = "error", kind: str | None = None,
                 inputs: tuple[str, ...] = VLM_INPUTS, group: str | None = None,
                 joint: bool = False) -> list[tuple[str, Observations]]:
    """[(group label, observations)] of a CSV/Parquet table: one group per ``group`` value, or
    with ``joint`` the whole table once, the group column kept as codes (a joint fit's index)."""
    df = load_table(source)
    if joint:
        return [("all", observations_from_table(df, source, metric, kind, inputs, group))]
    return [(label, observations_from_table(rows, source, metric, kind, inputs))
            for label, rows in groups_of(df, group, source)]

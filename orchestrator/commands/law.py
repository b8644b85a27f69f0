"""The commands about the law: fit, frontier, propose, report — over an experiment's ledger or a
table of runs — and profile, the inference cost they can price frontiers with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..study.results import find_experiment, format_table, rows


def _fit_settings(a, exp) -> None:
    """Fill the analysis flags left unset: from the experiment's spec (so `fit`, `propose`,
    `report` and the run's own summary are one analysis), else the engine's defaults."""
    from ..spec.study import FIT_DEFAULTS

    f = exp.spec.fit if exp is not None else None
    for name, default in FIT_DEFAULTS.items():
        if name != "cross_validate" and getattr(a, name) is None:
            setattr(a, name, getattr(f, name) if f is not None else default)
    a.cross_validate = not a.no_cross_validation and (f.cross_validate if f is not None else FIT_DEFAULTS["cross_validate"])


def _analyses(a, k: int = 0, compare_all: bool = False):
    """(experiment or None, its spec document, [(label, observations, analysis)]): one analysis per
    metric of ``--metric`` and per group of ``--group`` — or, with per-group parameters, one joint
    analysis per metric (scaling/grouped.py)."""
    from ..plan.price import budget_flops
    from ..scaling.analysis import TABLE_SUFFIXES, analyze
    from ..scaling.design import ProposalRequest
    from ..scaling.fit import FitSettings
    from ..scaling.table import parse_inputs
    from ..study.laws import choose
    from ..study.proposals import experiment_candidates, load_source

    located = None if a.source.endswith(TABLE_SUFFIXES) else find_experiment(a.source, a.storage)
    exp = located[0] if located else None
    if exp is None and getattr(a, "parameters", None):
        raise UsageError("--parameters applies to an experiment's cells; a table's N is its llm_params column")
    _fit_settings(a, exp)
    try:  # --budget, else spec.fit.budget: training FLOPs, or GPU hours at spec.price
        a.budget = budget_flops(getattr(a, "budget", None), exp) if k else None
    except ValueError as e:
        raise UsageError(f"--budget {a.budget!r}: {e}; give training FLOPs (e.g. 1e21) or GPU hours "
                         "(e.g. 200gpuh)") from None
    if not 0 < a.ci_level < 1:
        raise UsageError(f"--ci-level must lie strictly between 0 and 1 (e.g. 0.9), got {a.ci_level:g}")
    choice = choose(a, exp)
    if exp is not None and a.inputs:
        raise UsageError("--inputs applies to a table (CSV or Parquet); an experiment's inputs are its cells' "
                         "columns: N (llm_params), V (visual_tokens), train_samples, … — name them in a law")
    if not choice.law.positional and a.inputs:
        raise UsageError("--inputs names a built-in form's two columns; an expression names its inputs itself")
    inputs = parse_inputs(a.inputs) if choice.law.positional else choice.law.inputs
    metrics = [m.strip() for m in a.metric.split(",") if m.strip()]
    cost, compare = _cost_models(a, exp, located[1] if located else None, compare_all)
    table = rows(located[0], located[1], a.parameters) if located is not None else []
    if not choice.law.positional:
        _check_law_inputs(choice, a.source, table)
    if exp is not None:
        _say_if_partial(exp.name, table)
    out, spec_doc = [], None
    for metric in metrics:
        exp, spec_doc, groups = load_source(a.source, metric, a.storage, a.metric_kind, inputs, choice.group,
                                            choice.joint, a.parameters)
        for label, obs in groups:
            law = _grouped(choice, obs) if choice.joint else choice.law
            # an experiment's candidates shape its frontier whether or not picks are asked for: one analysis
            cands = experiment_candidates(exp, obs, table, a.parameters) if exp is not None else []
            name = label if len(metrics) == 1 else (metric if label == "all" else f"{metric}, {label}")
            settings = FitSettings(loss=a.loss, bootstrap=a.bootstrap, seed=a.seed, ci_level=a.ci_level,
                                   cross_validate=a.cross_validate)
            proposals = ProposalRequest(cands, k, a.budget if k else None)
            out.append((name, obs, analyze(obs, law, settings, a.text_tokens, proposals, cost, compare, choice.at)))
    return exp, spec_doc, out


def _check_law_inputs(choice, source: str, table: list[dict]) -> None:
    """Every name of an expression that is not a declared parameter must be a column: say which
    is neither, and how to declare it."""
    from ..scaling.analysis import ALIASES
    from ..scaling.table import load_table

    columns = set(load_table(source).columns) if not table else {k for r in table for k in r}
    columns |= {alias for alias, column in ALIASES.items() if column in columns}
    missing = [x for x in choice.law.inputs if x not in columns]
    if missing:
        raise UsageError(f"the law names {missing[0]!r}, which is neither a declared parameter nor a column of "
                         f"{source}: declare its range (--param {missing[0]}=LOW,HIGH, or under the law's params) "
                         "or fix the name")


def _grouped(choice, obs):
    """The chosen law with its per-group parameters over ``obs``'s group codes."""
    from ..scaling.grouped import GroupedLaw

    if choice.group is None:
        raise UsageError("per_group names parameters that take a value per group: give --group COLUMN "
                         "(or spec.fit.group)")
    base_inputs = obs.inputs if choice.law.positional else None
    return GroupedLaw(choice.law, choice.per_group, obs.group_labels, choice.group, base_inputs)


def _say_if_partial(name: str, table: list[dict]) -> None:
    """A fit of a grid not finished is asked for, and allowed — but never unannounced (on stderr:
    the JSON and CSV on stdout stay clean)."""
    planned = [r for r in table if "round" in r]
    done = sum(r["status"] == "finished" for r in planned)
    if done < len(planned):
        left: dict[str, int] = {}
        for r in planned:
            if r["status"] != "finished":
                left[r["status"]] = left.get(r["status"], 0) + 1
        print(f"note: {name}'s grid is partial — {done} of {len(planned)} cells finished ("
              + ", ".join(f"{n} {s}" for s, n in sorted(left.items())) + "); this fit uses the finished ones",
              file=sys.stderr)


def _cost_models(a, exp, exp_dir, compare_all: bool):
    from ..run.profiling import cost_models

    return cost_models(exp, exp_dir, getattr(a, "cost_model", None), a.text_tokens, compare_all,
                       where=exp.name if exp is not None else a.source)


def _analysis(a, k: int = 0, compare_all: bool = False):
    exp, spec_doc, groups = _analyses(a, k, compare_all)
    if len(groups) != 1:
        raise UsageError(f"this command takes one group; {a.source} has {len(groups)} (fit takes --group)")
    (_, obs, analysis), = groups
    return exp, spec_doc, obs, analysis


def cmd_fit(a) -> int:
    from ..scaling.analysis import format_analysis, nan_to_none

    _, _, groups = _analyses(a)
    results = {label: analysis for label, _, analysis in groups}
    if a.format == "json":
        doc = (nan_to_none(groups[0][2].as_dict()) if len(groups) == 1
               else {"group": a.group, "groups": {label: nan_to_none(x.as_dict()) for label, x in results.items()}})
        print(json.dumps(doc, indent=2))
    elif a.format == "csv":  # one row per group and parameter
        sys.stdout.write(format_table([{"group": label, "parameter": name, "value": value, "ci_low": x.fit.ci[name][0],
                                  "ci_high": x.fit.ci[name][1], "form": x.fit.form, "metric": x.observations.metric}
                                 for label, x in results.items() for name, value in x.fit.params.items()], "csv"))
    else:
        print("\n\n".join((f"[{label}]\n" if len(groups) > 1 else "") + format_analysis(x)
                           for label, x in results.items()))
    return 0


def cmd_frontier(a) -> int:
    """The optimal (N, V) per inference budget under the chosen cost model."""
    from ..scaling.analysis import nan_to_none

    _, _, _, analysis = _analysis(a)
    fr = analysis.frontier
    if fr is None:
        raise UsageError("a frontier needs an experiment's N and V (or a table with llm_params, visual_tokens)")
    doc = nan_to_none(fr.as_dict())
    if a.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    rows = [{"cost": fr.cost, "budget": p["budget"], "llm_params": p["llm_params"], "visual_tokens": p["visual_tokens"],
             analysis.observations.metric: p["error"], "llm_params_ci_low": p["llm_params_ci"][0],
             "llm_params_ci_high": p["llm_params_ci"][1], "visual_tokens_ci_low": p["visual_tokens_ci"][0],
             "visual_tokens_ci_high": p["visual_tokens_ci"][1], "extrapolated": p["extrapolated"]}
            for p in doc["points"]]
    if a.format == "csv":
        sys.stdout.write(format_table(rows, "csv"))
        return 0
    level = int(round(100 * analysis.fit.ci_level))
    print(f"frontier under {fr.cost_label}" + (f"; V* = {fr.optimal_visual_tokens:.3g}"
                                               if fr.optimal_visual_tokens is not None else ""))
    print(f"  {'budget ' + fr.cost_unit:>14} {'N*':>10} {'N* ' + str(level) + '% CI':>22} {'V*':>7} "
          f"{'V* ' + str(level) + '% CI':>18} {analysis.observations.metric[:9]:>9}")
    for r in rows:
        print(f"  {r['budget']:>14.4g} {r['llm_params']:>10.3g} {_ci_text(r['llm_params_ci_low'], r['llm_params_ci_high']):>22} "
              f"{r['visual_tokens']:>7.3g} {_ci_text(r['visual_tokens_ci_low'], r['visual_tokens_ci_high']):>18} "
              f"{r[analysis.observations.metric]:>9.4f}{'*' if r['extrapolated'] else ''}")
    return 0


def _ci_text(lo, hi) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"


NOTHING_TO_PROPOSE = 3  # propose's exit status when no candidate is left: a script must not run a stale next.yaml


def _nothing_left(exp, obs, a) -> str:
    """Why nothing is proposed, and what would add candidates."""
    from ..study.proposals import candidate_llms, experiment_candidates

    _, exp_dir = find_experiment(a.source, a.storage)
    left = experiment_candidates(exp, obs, rows(exp, exp_dir), a.parameters)
    if left and a.budget is not None:
        cheapest = min(c.cost for c in left)
        return (f"nothing to propose: each of the {len(left)} candidate cells left costs more than --budget "
                f"{a.budget:.3g} training FLOPs (the cheapest {cheapest:.3g}); raise --budget")
    sizes = candidate_llms(exp, obs, a.parameters)
    largest = max(sizes, key=lambda name: sizes[name]) if sizes else None
    return ("nothing to propose: every candidate cell is trained. To add candidates: a larger LLM in "
            f"spec.fit.candidates.llms (the largest now: {largest}), visual tokens in spec.grid.visual_tokens, "
            "or seeds in spec.grid.seeds to replicate cells where the law's noise dominates; nothing was written")


def cmd_propose(a) -> int:
    from ..scaling.analysis import TABLE_SUFFIXES, format_analysis, nan_to_none
    from ..store.layout import atomic_write_text
    from ..study.proposals import next_spec

    if a.pool:
        return _propose_from_pool(a)
    a.cost_model = a.cost  # for an experiment --cost names the inference cost model (with --pool, a cost column)
    if a.source is None:
        raise UsageError("propose needs an experiment (name or spec file), or --pool with a table of candidate runs")
    if a.source.endswith(TABLE_SUFFIXES):
        raise UsageError("propose needs an experiment (name or spec file), or --pool TABLE for a table of runs")
    if a.budget is not None and a.budget.strip().endswith("%"):
        raise UsageError("--budget as a share applies to --pool; for an experiment give training FLOPs (e.g. 1e21) "
                         "or GPU hours (e.g. 200gpuh)")
    exp, spec_doc, obs, analysis = _analysis(a, a.k)
    if not analysis.picks:
        print(_nothing_left(exp, obs, a), file=sys.stderr)
        return NOTHING_TO_PROPOSE
    output = a.output or "next.yaml"
    _, exp_dir = find_experiment(a.source, a.storage)
    atomic_write_text(Path(output), next_spec(exp, spec_doc, rows(exp, exp_dir), list(analysis.picks),
                                              str(exp_dir.root.parent)))
    if a.format == "json":
        print(json.dumps({"output": output, **nan_to_none(analysis.as_dict())}, indent=2))
    elif a.format == "csv":
        sys.stdout.write(format_table(analysis.as_dict()["proposals"], "csv"))
    else:
        print(format_analysis(analysis))
        print(f"wrote {output}: vlmscale run {output}")
    return 0


def _propose_from_pool(a) -> int:
    """``propose --pool``: the next rows of a table of candidate runs, written as a CSV."""
    from ..scaling.analysis import resolve_kind
    from ..scaling.pool import PoolColumns, PoolRequest, propose_from_pool
    from ..scaling.table import load_table, parse_inputs
    from ..store.layout import atomic_write_text
    from ..study.laws import choose

    if a.source is not None:
        raise UsageError("give either an experiment or --pool, not both")
    _fit_settings(a, None)
    if not a.cost:
        raise UsageError("--pool needs --cost: a column or an expression over columns, e.g. '6*N*D'")
    choice = choose(a, None)
    inputs = parse_inputs(a.inputs) if choice.law.positional else choice.law.inputs
    pool = load_table(a.pool)
    target = load_table(a.target) if a.target else None
    picks, budgets = propose_from_pool(pool, a.pool, PoolColumns(inputs, a.metric, a.group),
                                       PoolRequest(a.cost, a.k, a.budget, target), choice.law, a.loss,
                                       resolve_kind(a.metric, a.metric_kind))
    for b in budgets:
        cap = "no cap" if b.budget is None else f"budget {b.budget:.4g}, {b.spent / b.budget:.1%} spent"
        print(f"{(a.group or 'pool')}={b.group}: {b.observed} observed, {b.pending} pending, "
              f"{b.candidates} candidates; {cap}")
    if not picks:
        print("nothing to propose: no candidate fits in what is left of the budget; raise --budget or add "
              "rows to the pool (nothing was written)", file=sys.stderr)
        return NOTHING_TO_PROPOSE
    chosen = pool.iloc[[p.row for p in picks]].copy()
    chosen["proposed_cost"] = [p.cost for p in picks]
    output = a.output or "next.csv"
    atomic_write_text(Path(output), chosen.to_csv(index=False))
    if a.format != "table":
        sys.stdout.write(chosen.to_csv(index=False) if a.format == "csv" else chosen.to_json(orient="records", indent=2) + "\n")
        return 0
    print(chosen.to_string(index=False))
    print(f"wrote {len(picks)} rows to {output} ({'target region' if target is not None else 'law parameters'} "
          "variance per unit cost)")
    return 0


def cmd_report(a) -> int:
    import time

    from ..scaling.report import write_report

    exp, _, _, analysis = _analysis(a, a.k, compare_all=True)
    about = {"source": a.source if exp is None else f"{exp.name} (spec digest {exp.digest()})",
             "written": time.strftime("%Y-%m-%d %H:%M %Z")}
    written = write_report(analysis, a.output, title=f"{exp.name if exp else a.source}: scaling law", about=about)
    print(f"wrote {len(written)} files to {a.output}: open {Path(a.output) / 'index.html'}")
    return 0


def cmd_profile(a) -> int:
    """Measure (or reuse) the experiment's inference profile and print it."""
    from ..run.profiling import run_profile
    from ..spec.checks import check_artifacts

    exp, exp_dir = find_experiment(a.file, a.storage, require_state=False)
    check_artifacts(exp, a.file)
    exp_dir.check_writable()
    echo = print if a.format == "table" else (lambda line: print(line, file=sys.stderr))
    doc = run_profile(exp, exp_dir, a.address, a.fresh, echo)
    if a.format != "table":
        sys.stdout.write(format_table(doc["rows"], a.format) + ("\n" if a.format == "json" else ""))
        return 0
    print(_profile_table(doc))
    return 0


def _profile_table(doc) -> str:
    rows = doc["rows"]
    head = (f"{'llm':<16} {'N':>9} {'V':>5} {'compressor':<10} {'batch':>5} {'prefill ms':>11} {'p10-p90 ms':>13} "
            f"{'decode ms/tok':>13} {'peak MB':>9} {'GFLOPs LLM':>10} {'GFLOPs VLM':>10}")
    lines = [f"inference profile on {', '.join(doc['devices'])} (Q = {doc['settings']['text_tokens']} text tokens, "
             f"{doc['settings']['answer_tokens']} decoded):", head]
    for r in rows:
        lines.append(f"{r['llm']:<16} {r['llm_params']:>9.3g} {r['visual_tokens']:>5} {r['compressor']:<10} "
                     f"{r['batch_size']:>5} {1e3 * r['prefill_latency_s']:>11.3g} "
                     f"{1e3 * r['prefill_latency_p10_s']:>6.3g}-{1e3 * r['prefill_latency_p90_s']:<6.3g} "
                     f"{1e3 * r['decode_latency_s']:>13.3g} {r['peak_memory_bytes'] / 2**20:>9.3g} "
                     f"{r['inference_flops_llm'] / 1e9:>10.3g} {r['inference_flops_vlm'] / 1e9:>10.3g}")
    if doc["ratios"]:
        lines.append("\nprefill latency at the largest V over the smallest, beside the FLOPs ratio:")
        for q in doc["ratios"]:
            lines.append(f"  {q['llm']:<16} batch {q['batch_size']:>3}: V {q['v_low']}→{q['v_high']}: latency "
                         f"x{q['latency_ratio']:.2f}, FLOPs x{q['flops_ratio']:.2f} "
                         f"({q['latency_over_flops']:.2f} of the FLOPs ratio)")
    for c in doc["leave_one_out"]:
        lines.append(f"cost model {c['cost']}: leave-one-out relative error median {100 * c['median_rel_error']:.1f}%, "
                     f"max {100 * c['max_rel_error']:.1f}% over {c['points']} points")
    if doc.get("warning"):
        lines.append(f"warning: {doc['warning']}")
    lines.append("use it: vlmscale fit|propose|report NAME --cost latency[:BATCH] | memory[:BATCH]")
    return "\n".join(lines)

"""What each ``vlmscale`` command does, on an ``argparse.Namespace``-like object of its options.

The command line itself (options, help, completion, exit codes) is ``orchestrator.cli``; keeping
the two apart lets tests and scripts call a command without a shell. Heavy libraries are imported
inside the commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input that is not a spec error: reported in one line, exit 2."""


def _print_cells(exp) -> None:
    cells = exp.cells()
    print(f"{exp.name}: {len(cells)} cells (digest {exp.digest()})")
    width = max(len(c.key) for c in cells)
    print(f"  {'cell':<{width}}  {'llm':<20} {'V':>5}  {'compressor':<10} {'task':<8} seed")
    for c in cells:
        print(f"  {c.key:<{width}}  {c.llm:<20} {c.visual_tokens:>5}  {c.compressor:<10} {c.task:<8} {c.seed}")


def _check_scale(exp, force: bool) -> None:
    from .limits import check_scale

    check_scale(exp, force)


def cmd_validate(a) -> int:
    from .spec import load

    exp = load(a.file)
    _check_scale(exp, a.force)
    if a.format == "json":
        print(json.dumps({"name": exp.name, "digest": exp.digest(), "cells": [c.params() for c in exp.cells()]},
                         indent=2))
    elif a.format == "csv":
        from .results import render

        sys.stdout.write(render([c.params() for c in exp.cells()], "csv"))
    else:
        _print_cells(exp)
    return 0


def cmd_schema(a) -> int:
    from .spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _run(exp, spec_text: str, a, storage: str) -> int:
    from .schedule import run_experiment

    if a.rounds is not None and a.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {a.rounds}")
    if a.plain or not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's forwarded warnings without raw colour codes
    outcome = run_experiment(exp, spec_text, address=a.address, live=None if not a.plain else False,
                             rounds=a.rounds, storage=storage)
    print(f"\n{exp.name}: {len(outcome.finished)} cells finished ({len(outcome.skipped)} from before), "
          f"{len(outcome.errored)} errored, in {outcome.seconds:.0f} s")
    for key, err in outcome.errored.items():
        print(f"  {key}: {err}")
    print(f"results:  vlmscale results {exp.name} --storage {outcome.exp_dir.root.parent}")
    print(f"MLflow:   {outcome.tracking_uri} (vlmscale ui {exp.name} --storage {outcome.exp_dir.root.parent})")
    return 0 if not outcome.errored else 1


def cmd_run(a) -> int:
    from .spec import load

    exp = load(a.file)
    _check_scale(exp, a.force)
    return _run(exp, Path(a.file).read_text(), a, exp.storage_root(a.storage))


def cmd_resume(a) -> int:
    import yaml

    from .results import locate

    exp, exp_dir = locate(a.name, a.storage)
    manifest = json.loads(exp_dir.manifest.read_text())
    return _run(exp, manifest.get("spec_yaml") or yaml.safe_dump(manifest["spec"], sort_keys=False), a,
                str(exp_dir.root.parent))


def cmd_results(a) -> int:
    from .results import locate, render, rows

    exp, exp_dir = locate(a.name, a.storage)
    sys.stdout.write(render(rows(exp, exp_dir), a.format))
    return 0


def _cluster_experiment(a):
    """The experiment named on the command line, for cluster commands: a spec file, or a name whose
    spec is in local storage."""
    from .results import locate

    exp, _ = locate(a.name, a.storage, require_state=False)
    from .kube.submit import api_client

    return exp, api_client(a.kubeconfig, a.context)


def cmd_render(a) -> int:
    from .kube.render import render, to_yaml
    from .spec import load

    exp = load(a.file)
    _check_scale(exp, a.force)
    sys.stdout.write(to_yaml(render(exp, a.image, a.namespace)))
    return 0


def cmd_submit(a) -> int:
    from .spec import load
    from .kube.submit import api_client, submit

    exp = load(a.file)
    _check_scale(exp, a.force)
    if a.rounds is not None:
        if a.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {a.rounds}")
        # the rounds are part of the experiment: the RayJob's `vlmscale run` follows the spec it mounts
        exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={
            "rounds": exp.spec.rounds.model_copy(update={"count": a.rounds})})})
    result = submit(exp, api_client(a.kubeconfig, a.context), a.image, a.namespace)
    verb = "submitted" if result.created else "already submitted (same spec), nothing to do"
    print(f"{exp.name}: {verb} — rayjob/{result.name} in namespace {result.namespace}")
    print(f"watch: vlmscale status {a.file} --cluster; vlmscale logs {a.file} --cluster")
    return 0


def cmd_logs(a) -> int:
    from .kube.submit import logs

    if not a.cluster:
        raise UsageError("logs are read from the cluster: add --cluster (local runs print to the terminal)")
    exp, api = _cluster_experiment(a)
    print(logs(exp, api, a.namespace, a.tail))
    return 0


def cmd_delete(a) -> int:
    from .kube.submit import delete

    if not a.cluster:
        raise UsageError("delete removes the experiment from a cluster: add --cluster "
                         "(a local experiment is a directory under its storage path)")
    exp, api = _cluster_experiment(a)
    gone = delete(exp, api, a.namespace)
    print(f"{exp.name}: deleted {', '.join(gone)}" if gone else f"{exp.name}: nothing to delete")
    return 0


def cmd_status(a) -> int:
    from .results import locate, render, rows

    if a.cluster:
        from .kube.submit import status

        exp, api = _cluster_experiment(a)
        st = status(exp, api, a.namespace)
        print(f"{exp.name}: job {st['jobStatus']}, deployment {st['deploymentStatus']}"
              f"{', cluster ' + st['rayCluster'] if st['rayCluster'] else ''}; rayjob/{st['name']} in {st['namespace']}"
              f"{(' — ' + st['message']) if st['message'] else ''}")
        return 0
    exp, exp_dir = locate(a.name, a.storage)
    table = rows(exp, exp_dir)
    counts: dict[str, int] = {}
    for r in table:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    from .calibrate import chosen_lrs

    lrs = chosen_lrs(exp_dir)
    if a.format == "json":
        print(json.dumps({"name": exp.name, "state": str(exp_dir.root), "counts": counts, "learning_rates": lrs,
                          "cells": table}, indent=2))
        return 0
    if a.format == "csv":
        sys.stdout.write(render(table, "csv"))
        return 0
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{exp.name}: {len(table)} cells — {summary}; state in {exp_dir.root}")
    if lrs:
        print("calibrated learning rates: " + ", ".join(f"{llm} {lr:.3g}" for llm, lr in lrs.items()))
    sys.stdout.write(render(table, "table"))
    return 0


def cmd_ui(a) -> int:
    from .results import locate
    from .schedule import tracking_target

    exp, exp_dir = locate(a.name, a.storage)
    uri, _, _ = tracking_target(exp, exp_dir)
    if not uri.startswith("sqlite:///"):
        print(f"{exp.name} tracks to {uri}: open that server's UI")
        return 0
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow) if mlflow.exists() else "mlflow", "ui", "--backend-store-uri", uri,
            "--host", "127.0.0.1", "--port", str(a.port), "--workers", "1"]
    print(f"MLflow UI for {exp.name}: http://127.0.0.1:{a.port}", flush=True)
    os.execvp(argv[0], argv)
    return 0  # not reached


def _fit_settings(a, exp) -> None:
    """Fill the analysis flags left unset: from the experiment's spec (so `fit`, `propose`,
    `report` and the run's own summary are one analysis), else the engine's defaults."""
    f = exp.spec.fit if exp is not None else None
    defaults = {"form": "multiplicative", "loss": "squared", "metric": "error", "metric_kind": None,
                "ci_level": 0.9, "text_tokens": 0.0, "bootstrap": 1000}
    for name, default in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, getattr(f, name) if f is not None else default)
    a.cross_validate = not a.no_cross_validation and (f.cross_validate if f is not None else True)


def _analyses(a, k: int = 0, compare_all: bool = False):
    """(experiment or None, its spec document, [(group, observations, analysis)])."""
    from .results import locate, rows
    from .scaling.analysis import TABLE_SUFFIXES, analyze, experiment_candidates, load_source
    from .scaling.table import parse_inputs

    located = None if a.source.endswith(TABLE_SUFFIXES) else locate(a.source, a.storage)
    _fit_settings(a, located[0] if located else None)
    if not 0 < a.ci_level < 1:
        raise UsageError(f"--ci-level must lie strictly between 0 and 1 (e.g. 0.9), got {a.ci_level:g}")
    exp, spec_doc, groups = load_source(a.source, a.metric, a.storage, a.metric_kind, parse_inputs(a.inputs), a.group)
    cost, compare = _cost_models(a, exp, located[1] if located else None, compare_all)
    out = []
    for label, obs in groups:
        # an experiment's candidates shape its frontier whether or not picks are asked for: one analysis
        cands = experiment_candidates(exp, obs, rows(*located)) if exp is not None else []
        out.append((label, obs, analyze(obs, a.form, a.loss, a.text_tokens, a.bootstrap, a.seed, cands, k,
                                        getattr(a, "budget", None), a.ci_level, a.cross_validate, cost, compare)))
    return exp, spec_doc, out


def _cost_models(a, exp, exp_dir, compare_all: bool):
    from .profiling import cost_models

    try:
        return cost_models(exp, exp_dir, getattr(a, "cost_model", None), a.text_tokens, compare_all,
                           where=exp.name if exp is not None else a.source)
    except LookupError as e:
        raise UsageError(str(e)) from None


def _analysis(a, k: int = 0, compare_all: bool = False):
    exp, spec_doc, groups = _analyses(a, k, compare_all)
    if len(groups) != 1:
        raise UsageError(f"this command takes one group; {a.source} has {len(groups)} (fit takes --group)")
    (_, obs, analysis), = groups
    return exp, spec_doc, obs, analysis


def cmd_fit(a) -> int:
    from .scaling.analysis import format_analysis, nan_to_none

    _, _, groups = _analyses(a)
    results = {label: analysis for label, _, analysis in groups}
    if a.format == "json":
        doc = (nan_to_none(groups[0][2].as_dict()) if a.group is None
               else {"group": a.group, "groups": {label: nan_to_none(x.as_dict()) for label, x in results.items()}})
        print(json.dumps(doc, indent=2))
    elif a.format == "csv":  # one row per group and parameter
        from .results import render

        sys.stdout.write(render([{"group": label, "parameter": name, "value": value, "ci_low": x.fit.ci[name][0],
                                  "ci_high": x.fit.ci[name][1], "form": x.fit.form, "metric": x.observations.metric}
                                 for label, x in results.items() for name, value in x.fit.params.items()], "csv"))
    else:
        print("\n\n".join((f"[{a.group} = {label}]\n" if a.group else "") + format_analysis(x)
                           for label, x in results.items()))
    return 0


def cmd_frontier(a) -> int:
    """The optimal (N, V) per inference budget under the chosen cost model."""
    from .results import render
    from .scaling.analysis import nan_to_none

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
        sys.stdout.write(render(rows, "csv"))
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


def cmd_propose(a) -> int:
    from .scaling.analysis import TABLE_SUFFIXES, format_analysis, nan_to_none, next_spec
    from .layout import atomic_write_text

    if a.pool:
        return _propose_from_pool(a)
    a.cost_model = a.cost  # for an experiment --cost names the inference cost model (with --pool, a cost column)
    if a.source is None:
        raise UsageError("propose needs an experiment (name or spec file), or --pool with a table of candidate runs")
    if a.source.endswith(TABLE_SUFFIXES):
        raise UsageError("propose needs an experiment (name or spec file), or --pool TABLE for a table of runs")
    if a.budget is not None and a.budget.strip().endswith("%"):
        raise UsageError("--budget as a share applies to --pool; for an experiment give training FLOPs, e.g. 1e15")
    a.budget = float(a.budget) if a.budget is not None else None
    exp, spec_doc, obs, analysis = _analysis(a, a.k)
    if not analysis.picks:
        print("nothing to propose: every candidate cell is done or over --budget")
        return 0
    output = a.output or "next.yaml"
    atomic_write_text(Path(output), next_spec(exp, spec_doc, obs, list(analysis.picks)))
    if a.format == "json":
        print(json.dumps({"output": output, **nan_to_none(analysis.as_dict())}, indent=2))
    elif a.format == "csv":
        from .results import render

        sys.stdout.write(render(analysis.as_dict()["proposals"], "csv"))
    else:
        print(format_analysis(analysis))
        print(f"wrote {output}: vlmscale run {output}")
    return 0


def _propose_from_pool(a) -> int:
    """``propose --pool``: the next rows of a table of candidate runs, written as a CSV."""
    from .layout import atomic_write_text
    from .scaling.analysis import resolve_kind
    from .scaling.pool import propose_from_pool
    from .scaling.table import load_table, parse_inputs

    if a.source is not None:
        raise UsageError("give either an experiment or --pool, not both")
    _fit_settings(a, None)
    if not a.cost:
        raise UsageError("--pool needs --cost: a column or an expression over columns, e.g. '6*N*D'")
    pool = load_table(a.pool)
    target = load_table(a.target) if a.target else None
    picks, budgets = propose_from_pool(pool, a.pool, parse_inputs(a.inputs), a.metric, a.cost, a.k, a.budget, target,
                                       a.group, a.form, a.loss, resolve_kind(a.metric, a.metric_kind))
    for b in budgets:
        cap = "no cap" if b.budget is None else f"budget {b.budget:.4g}, {b.spent / b.budget:.1%} spent"
        print(f"{(a.group or 'pool')}={b.group}: {b.observed} observed, {b.pending} pending, "
              f"{b.candidates} candidates; {cap}")
    if not picks:
        print("nothing to propose: no candidate fits in what is left of the budget")
        return 0
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
    from .scaling.report import write_report

    exp, _, _, analysis = _analysis(a, a.k, compare_all=True)
    written = write_report(analysis, a.output, title=f"{exp.name if exp else a.source}: scaling law")
    print(f"wrote {len(written)} files to {a.output}: open {Path(a.output) / 'index.html'}")
    return 0


def cmd_profile(a) -> int:
    """Measure (or reuse) the experiment's inference profile and print it."""
    from .profiling import run_profile
    from .results import locate, render
    from .schedule import check_writable

    exp, exp_dir = locate(a.file, a.storage, require_state=False)
    check_writable(exp_dir)
    echo = print if a.format == "table" else (lambda line: print(line, file=sys.stderr))
    doc = run_profile(exp, exp_dir, a.address, a.fresh, echo)
    if a.format != "table":
        sys.stdout.write(render(doc["rows"], a.format) + ("\n" if a.format == "json" else ""))
        return 0
    print(_profile_table(doc))
    return 0


def _profile_table(doc) -> str:
    rows = doc["rows"]
    head = (f"{'llm':<16} {'N':>9} {'V':>5} {'compressor':<10} {'batch':>5} {'prefill ms':>11} {'p10-p90 ms':>13} "
            f"{'decode ms/tok':>13} {'peak MB':>9} {'GFLOPs':>8}")
    lines = [f"inference profile on {', '.join(doc['devices'])} (Q = {doc['settings']['text_tokens']} text tokens, "
             f"{doc['settings']['answer_tokens']} decoded):", head]
    for r in rows:
        lines.append(f"{r['llm']:<16} {r['llm_params']:>9.3g} {r['visual_tokens']:>5} {r['compressor']:<10} "
                     f"{r['batch_size']:>5} {1e3 * r['prefill_latency_s']:>11.3g} "
                     f"{1e3 * r['prefill_latency_p10_s']:>6.3g}-{1e3 * r['prefill_latency_p90_s']:<6.3g} "
                     f"{1e3 * r['decode_latency_s']:>13.3g} {r['peak_memory_bytes'] / 2**20:>9.3g} "
                     f"{r['inference_flops'] / 1e9:>8.3g}")
    if doc["ratios"]:
        lines.append("\nprefill latency at the largest V over the smallest, beside the FLOPs ratio:")
        for q in doc["ratios"]:
            lines.append(f"  {q['llm']:<16} batch {q['batch_size']:>3}: V {q['v_low']}→{q['v_high']}: latency "
                         f"x{q['latency_ratio']:.2f}, FLOPs x{q['flops_ratio']:.2f} "
                         f"({q['latency_over_flops']:.2f} of the FLOPs ratio)")
    for c in doc["leave_one_out"]:
        lines.append(f"cost model {c['cost']}: leave-one-out relative error median {100 * c['median_rel_error']:.1f}%, "
                     f"max {100 * c['max_rel_error']:.1f}% over {c['points']} points")
    lines.append("use it: vlmscale fit|propose|report NAME --cost latency[:BATCH] | memory[:BATCH]")
    return "\n".join(lines)

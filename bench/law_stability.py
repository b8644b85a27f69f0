"""How stable is an experiment's fitted law? Run its grid under several seeds, fit each, compare.

    python bench/law_stability.py examples/quickstart.yaml                 # seeds 0 1 2
    python bench/law_stability.py examples/quickstart.yaml --threads 1 2   # also across OMP_NUM_THREADS
    python bench/law_stability.py examples/reasoning.yaml --set spec.training.steps=400

Every cell is the spec's own (``vlmscale validate`` expands the same ones) with the seed replaced,
trained in-process by the loop ``vlmscale run`` runs on Ray (two at a time on 2 cores) on the
spec's pretrained vision tower. For each seed it prints the error table, the fitted exponents,
leave-one-out error and how many adjacent pairs fall along each axis; then the spread of α and
β across seeds (max deviation from their mean, in % of it) and the frontier's V* at Q = 50.
``--json`` keeps every number, so the README's figures can be re-derived by anyone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _set(doc: dict, assignment: str) -> None:
    path, _, value = assignment.partition("=")
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = yaml.safe_load(value)


def _train(args: tuple[dict, str]) -> dict:
    config, threads = args
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from workloads.config import CellConfig
    from workloads.train import train_local

    os.environ["OMP_NUM_THREADS"] = threads
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        metrics, _ = train_local(CellConfig.from_dict(config), d)
    return {k: v for k, v in metrics.items() if isinstance(v, float)} | {"seconds": time.perf_counter() - t0}


def falls(table: dict, llms: list[str], vs: list[int]) -> tuple[int, int, int, int]:
    """(pairs falling with N, of, pairs falling with V, of) over adjacent grid neighbours."""
    along_n = [table[a, v] > table[b, v] for v in vs for a, b in zip(llms, llms[1:])]
    along_v = [table[m, a] > table[m, b] for m in llms for a, b in zip(vs, vs[1:])]
    return sum(along_n), len(along_n), sum(along_v), len(along_v)


def run(spec_path: Path, seeds: list[int], threads: list[str], sets: list[str], metric: str | None,
        jobs: int) -> dict:
    from orchestrator.scaling.analysis import observations_from_rows
    from orchestrator.scaling.fit import FitSettings, fit_law
    from orchestrator.scaling.forms import closed_form_visual_tokens, metric_kind
    from orchestrator.spec import expand, parse
    from workloads.pretrain_vision import pretrain_vision

    doc = yaml.safe_load(spec_path.read_text())
    for s in sets:
        _set(doc, s)
    doc["spec"]["grid"]["seeds"] = [0]
    exp = parse(doc, str(spec_path))
    f = exp.spec.fit
    metric = metric or f.metric
    v = exp.spec.vision
    vision_path = None
    if v.pretrain is not None:
        from orchestrator.spec.cells import tower

        t = tower(exp.spec)  # one directory per pretraining settings, as an experiment keeps them
        cache = Path(tempfile.gettempdir()) / "vlmscale-bench" / t.name()
        vision_path = str(pretrain_vision(t.preset, cache, steps=t.steps, batch_size=t.batch_size, lr=t.lr,
                                          seed=t.seed, cells=t.cells).path)
    lrs = None
    if exp.spec.training.calibration is not None:  # the experiment's own calibration, as `vlmscale run` does it
        import ray

        from orchestrator.run.calibration_search import calibrate
        from orchestrator.run.cluster import WORKER_ENV
        from orchestrator.store.layout import ExperimentDir

        cal_dir = ExperimentDir(Path(tempfile.gettempdir()) / "vlmscale-bench" / "calibration" / exp.name)
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": WORKER_ENV})
        try:
            lrs = calibrate(exp, cal_dir, list(dict.fromkeys(c[0] for c in exp.spec.grid.combinations())),
                            vision_path)
        finally:
            ray.shutdown()
    base = expand(exp, vision_path, lrs)
    llms = list(dict.fromkeys(c.llm for c in base))
    vs = sorted({c.visual_tokens for c in base})
    jobs_list = []
    for t in threads:
        for seed in seeds:
            for c in base:
                cfg = c.config.to_dict()
                cfg["data"]["seed"] = cfg["train"]["seed"] = seed
                jobs_list.append(((t, seed, c.llm, c.visual_tokens), (cfg, t)))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = dict(zip([k for k, _ in jobs_list], pool.map(_train, [a for _, a in jobs_list])))
    wall = time.perf_counter() - t0

    runs = []
    for t in threads:
        for seed in seeds:
            rows = [{"cell": f"{m}-{vv}", "llm": m, "compressor": c.compressor, "status": "finished",
                     "visual_tokens": vv, **results[(t, seed, m, vv)]}
                    for c in base for m, vv in [(c.llm, c.visual_tokens)]]
            obs = observations_from_rows(rows, metric, f.metric_kind)
            fit = fit_law(obs.n, obs.v, obs.e, form=f.form, settings=FitSettings(loss=f.loss, bootstrap=0, kind=obs.kind))
            table = {(r["llm"], r["visual_tokens"]): r[metric] for r in rows}
            err = {(r["llm"], r["visual_tokens"]): r["error"] for r in rows}
            p = fit.params
            v_star = closed_form_visual_tokens(p["alpha"], p["beta"], 50.0, min(vs), max(vs)) \
                if f.form == "multiplicative" else None
            runs.append({"threads": t, "seed": seed, "params": p, "loo": fit.loo_rel_error, "r2": fit.r2,
                         "falls": falls(table, llms, vs), "falls_error": falls(err, llms, vs), "v_star_q50": v_star,
                         "table": {f"{m} V={vv}": table[m, vv] for m in llms for vv in vs},
                         "error": {f"{m} V={vv}": err[m, vv] for m in llms for vv in vs},
                         "cells": rows, "seconds": sum(r["seconds"] for r in rows)})
    return {"spec": str(spec_path), "sets": sets, "metric": metric, "learning_rates": lrs, "kind": f.metric_kind or metric_kind(metric),
            "llms": llms, "visual_tokens": vs, "runs": runs, "wall_s": wall}


def spread(values: list[float]) -> float:
    """Largest deviation from the mean, as a fraction of the mean."""
    m = float(np.mean(values))
    return float(np.max(np.abs(np.asarray(values) - m)) / abs(m)) if m else float("inf")


def report(out: dict) -> str:
    lines = [f"{out['spec']} {' '.join(out['sets'])}: fitted metric {out['metric']} ({out['kind']}); "
             f"{len(out['runs'])} grids in {out['wall_s']:.0f} s"]
    if out.get("learning_rates"):
        lines.append("calibrated learning rates: " + ", ".join(f"{m} {lr:.3g}" for m, lr in out["learning_rates"].items()))
    llms, vs = out["llms"], out["visual_tokens"]
    for r in out["runs"]:
        p = r["params"]
        fn, n_of, fv, v_of = r["falls"]
        en, _, ev, _ = r["falls_error"]
        lines.append(f"\nseed {r['seed']}, OMP_NUM_THREADS={r['threads']}: alpha {p['alpha']:.3f}  beta {p['beta']:.3f}  "
                     f"LOO {100 * r['loo']:.1f}%  R² {r['r2']:.3f}  V*(Q=50) "
                     + (f"{r['v_star_q50']:.3g}" if r["v_star_q50"] is not None else "n/a"))
        lines.append(f"  {out['metric']} falls with N in {fn}/{n_of} pairs, with V in {fv}/{v_of}"
                     f"  (error: {en}/{n_of}, {ev}/{v_of})")
        lines.append(f"  {'':>8} " + " ".join(f"{'V=' + str(v):>14}" for v in vs))
        for m in llms:
            lines.append(f"  {m:>8} " + " ".join(
                f"{r['table'][f'{m} V={v}']:>7.4f} ({r['error'][f'{m} V={v}']:.3f})" for v in vs))
    alphas = [r["params"]["alpha"] for r in out["runs"]]
    betas = [r["params"]["beta"] for r in out["runs"]]
    lines.append(f"\nacross {len(out['runs'])} grids: alpha {min(alphas):.3f}–{max(alphas):.3f} "
                 f"(spread {100 * spread(alphas):.0f}% of the mean), beta {min(betas):.3f}–{max(betas):.3f} "
                 f"(spread {100 * spread(betas):.0f}%), worst LOO {100 * max(r['loo'] for r in out['runs']):.1f}%, "
                 f"fewest falling pairs N {min(r['falls'][0] for r in out['runs'])}/{out['runs'][0]['falls'][1]}, "
                 f"V {min(r['falls'][2] for r in out['runs'])}/{out['runs'][0]['falls'][3]}; "
                 f"alpha {'>' if np.mean(alphas) > np.mean(betas) else '<'} beta")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", nargs="+", default=["1"], help="OMP_NUM_THREADS values of the launching process")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                   help="override a spec field, e.g. spec.training.steps=400")
    p.add_argument("--metric", help="default: the spec's fit.metric")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    out = run(a.spec, a.seeds, a.threads, a.sets, a.metric, a.jobs)
    print(report(out))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

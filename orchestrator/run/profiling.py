"""``vlmscale profile``: the inference cost of every LLM × V × compressor of an experiment, measured
on the hardware it will be served on (workloads/inference_cost.py measures one architecture).

Each point is its own Ray task on ``spec.profile``'s resources (a GPU type with
``accelerator_type``); on CPUs, points run one at a time, since concurrent timings on shared cores
would disturb each other. Results are kept per point under ``<experiment>/profile/<digest>/`` (the
digest covers the settings, so changing them measures again and a rerun measures only what is
missing), assembled into ``profile/profile.json`` (rows, settings, device, leave-one-out check of
the interpolation), and logged to MLflow as the experiment's "profile" run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any


def points(exp) -> list[tuple[str, int, str]]:
    """(llm, V, compressor) to profile: the grid's, with spec.profile.llms added to every V × compressor."""
    combos = exp.spec.grid.combinations()
    llms = list(dict.fromkeys([c[0] for c in combos] + list(exp.spec.profile.llms)))
    vs = sorted({c[1] for c in combos})
    comps = list(dict.fromkeys(c[2] for c in combos))
    return [(llm, v, comp) for llm in llms for v in vs for comp in comps]


def measured_q(exp) -> int:
    """Q of the measured prompts: the experiment's one Q (spec.fit.text_tokens), at least one token."""
    return max(1, int(round(exp.spec.fit.text_tokens)))


def settings(exp) -> dict[str, Any]:
    """What the profile measured under: spec.profile's settings and Q."""
    return {**exp.spec.profile.model_dump(), "text_tokens": measured_q(exp)}


def settings_digest(exp) -> str:
    p = exp.spec.profile
    what = {"profile": p.model_dump(exclude={"llms", "max_concurrent"}), "text_tokens": measured_q(exp),
            "vision": exp.spec.vision.model,
            "feature_layer": exp.spec.vision.feature_layer, "kv_layers": list(exp.spec.vision.kv_layers),
            "heads": exp.spec.vision.compressor_heads, "tokenizer": exp.spec.data.tokenizer}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def _key(llm: str, v: int, comp: str) -> str:
    return hashlib.sha256(f"{llm}|{v}|{comp}".encode()).hexdigest()[:10] + f"-v{v}-{comp}"


def measure(model: dict, data: dict, settings: dict, threads: int) -> list[dict]:
    """The Ray task: one architecture's rows (imports torch here, in the worker)."""
    from workloads.config import DataConfig, ModelConfig, ProfileSettings
    from workloads.inference_cost import profile_model

    return profile_model(ModelConfig(**model), DataConfig(**data), ProfileSettings(**settings), threads=threads)


def run_profile(exp, exp_dir, address: str | None = None, fresh: bool = False, echo=print) -> dict[str, Any]:
    """Measure what is missing, then assemble, store and log the profile. Returns the stored document."""
    from workloads.storage import write_text_atomic

    p = exp.spec.profile
    digest = settings_digest(exp)
    todo, rows = [], []
    for llm, v, comp in points(exp):
        path = exp_dir.profile_point(digest, _key(llm, v, comp))
        try:
            if fresh:
                raise FileNotFoundError
            rows += json.loads(path.read_text())["rows"]
        except FileNotFoundError:
            todo.append((llm, v, comp, path))
    echo(f"{exp.name}: profiling {len(todo)} of {len(points(exp))} architectures "
         f"(batch sizes {', '.join(map(str, p.batch_sizes))}; Q = {measured_q(exp)}; {p.repeats} repeats)")
    if todo:
        rows += _measure_all(exp, todo, address, echo, write_text_atomic)
    doc = assemble(exp, rows, digest)
    if doc["warning"]:
        echo(f"warning: {doc['warning']}")
    write_text_atomic(exp_dir.profile, json.dumps(doc, indent=2) + "\n")
    _log_to_mlflow(exp, exp_dir, doc)
    return doc


def _measure_all(exp, todo, address, echo, write) -> list[dict]:
    import ray

    from .cluster import start_ray

    p = exp.spec.profile
    s = exp.spec
    start_ray(address or os.environ.get("RAY_ADDRESS"))
    options: dict[str, Any] = {"num_cpus": p.cpus, "num_gpus": p.gpus, "max_retries": 1}
    if p.accelerator_type:
        options["accelerator_type"] = p.accelerator_type
    task = ray.remote(measure).options(**options)
    limit = p.max_concurrent or (1 if p.gpus == 0 else len(todo))
    settings = {"batch_sizes": tuple(p.batch_sizes), "text_tokens": measured_q(exp), "answer_tokens": p.answer_tokens,
                "repeats": p.repeats, "warmup": p.warmup, "dtype": p.dtype}
    data = {"source": s.data.source, "tokenizer": s.data.tokenizer}
    pending: dict[Any, tuple] = {}
    queue, out, t0 = list(todo), [], time.time()
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                llm, v, comp, path = queue.pop(0)
                model = {"llm": llm, "vision": s.vision.model, "compressor": comp, "visual_tokens": v,
                         "vision_feature_layer": s.vision.feature_layer, "kv_layers": tuple(s.vision.kv_layers),
                         "compressor_heads": s.vision.compressor_heads}
                pending[task.remote(model, data, settings, max(1, int(p.cpus)))] = (llm, v, comp, path)
            done, _ = ray.wait(list(pending), num_returns=1)
            llm, v, comp, path = pending.pop(done[0])
            got = ray.get(done[0])
            write(path, json.dumps({"rows": got}, indent=2) + "\n")  # kept at once: a rerun skips it
            out += got
            lat = ", ".join(f"{1e3 * r['prefill_latency_s']:.3g} ms (b{r['batch_size']})" for r in got)
            echo(f"[vlmscale] profiled {llm} V={v} {comp} on {got[0]['device']}: prefill {lat}  "
                 f"({time.time() - t0:.0f} s)")
    finally:
        ray.shutdown()
    return out


def assemble(exp, rows: list[dict], digest: str) -> dict[str, Any]:
    """The stored profile: rows in grid order, settings, the leave-one-out check of each cost model."""
    from workloads.inference_cost import COLUMNS

    from ..scaling.cost import CostError, leave_one_out, ratios

    order = {(llm, v, comp): i for i, (llm, v, comp) in enumerate(points(exp))}
    rows = sorted(rows, key=lambda r: (order.get((r["llm"], r["visual_tokens"], r["compressor"]), 1 << 30),
                                       r["batch_size"]))
    rows = [priced({c: r.get(c) for c in COLUMNS}) for r in rows]
    checks = []
    for kind in ("latency", "memory"):
        for b in exp.spec.profile.batch_sizes:
            try:
                loo = leave_one_out(rows, kind, b)
            except CostError:  # fewer than two sizes or V values: nothing to interpolate
                continue
            errs = sorted(x["rel_error"] for x in loo)
            if errs:
                checks.append({"cost": f"{kind}:{b}", "points": len(errs), "median_rel_error": errs[len(errs) // 2],
                               "max_rel_error": errs[-1]})
    return {"name": exp.name, "digest": digest, "settings": settings(exp),
            "devices": sorted({str(r["device"]) for r in rows}), "rows": rows, "leave_one_out": checks,
            "ratios": ratios(rows), "warning": spread_warning(rows)}


SPREAD_LIMIT = 0.5  # (p90 − p10) / median of a point's timed prefills beyond which its timing is noise


def spread_warning(rows: list[dict]) -> str | None:
    """A busy machine (other processes, frequency scaling) spreads a point's repeats widely: say so
    when a quarter of the points spread past SPREAD_LIMIT, so nobody builds a frontier on noise."""
    spreads = [(float(r["prefill_latency_p90_s"]) - float(r["prefill_latency_p10_s"])) / float(r["prefill_latency_s"])
               for r in rows if r.get("prefill_latency_s")]
    wide = [x for x in spreads if x > SPREAD_LIMIT]
    if not spreads or len(wide) * 4 < len(spreads):
        return None
    return (f"the machine is busy: timings unreliable ({len(wide)} of {len(spreads)} points spread more than "
            f"{SPREAD_LIMIT:.0%} of their median between the 10th and 90th percentile, up to {max(wide):.0%}); "
            "profile again on an idle machine (`vlmscale profile --fresh`)")


def priced(row: dict[str, Any]) -> dict[str, Any]:
    """A measured row with its FLOPs at the prompt it measured: the LLM's and the whole VLM's."""
    from ..scaling.cost import llm_prefill_flops, vlm_inference_flops

    n, v, q = float(row["llm_params"]), float(row["visual_tokens"]), float(row["text_tokens"])
    return {**row, "inference_flops_llm": llm_prefill_flops(n, v, q),
            "inference_flops_vlm": float(vlm_inference_flops(n, v, q, row["inference_flops_vision"],
                                                             row["inference_flops_compressor"],
                                                             row["compressor_reads_question"]))}


def cost_models(exp, exp_dir, text: str | None, text_tokens: float, compare_all: bool = False,
                where: str = "the experiment"):
    """The experiment's cost models (scaling.cost.cost_models) over its stored profile, if any."""
    from ..scaling.cost import cost_models as build

    profile = read_profile(exp_dir) if exp_dir is not None else None
    compressor = exp.spec.grid.compressors[0] if exp is not None else None
    return build(text, text_tokens, profile, compressor, compare_all, where)


def read_profile(exp_dir) -> dict[str, Any] | None:
    from ..store.checks import profile_problem, read

    return read(exp_dir.profile, profile_problem, f"move it aside and run `vlmscale profile {exp_dir.root.name}` "
                "again (its points are measured again)")


def _log_to_mlflow(exp, exp_dir, doc: dict[str, Any]) -> None:
    import tempfile
    from pathlib import Path

    from ..study.results import format_table
    from ..tracking import tracker as track
    from ..tracking.tracker import tracking_target

    tracker = track.Tracker(*tracking_target(exp, exp_dir))
    run_id = tracker.profile_run(exp.name, doc["digest"])
    tracker.log_params_once(run_id, {**{f"profile.{k}": v for k, v in doc["settings"].items()},
                                     "device": ", ".join(doc["devices"])})
    metrics = {f"loo_median_rel_error/{c['cost']}": c["median_rel_error"] for c in doc["leave_one_out"]}
    metrics.update({f"latency_ratio/{r['llm']}/b{r['batch_size']}": r["latency_ratio"] for r in doc["ratios"]})
    tracker.log_metrics(run_id, metrics, step=0, force=True)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "profile.csv").write_text(format_table(doc["rows"], "csv"))
        (Path(d) / "profile.json").write_text(json.dumps(doc, indent=2))
        tracker.log_artifacts(run_id, d, "profile")
    tracker.finish(run_id)

"""An experiment in the engine's terms: its observations (from the ledger), the cells it could run
next, and the engine's picks written back as a spec that extends the same experiment.

The engine (orchestrator/scaling/) takes tables and settings; this module is what knows about
experiments, presets and compressors. No Ray, torch or MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from workloads.compressors import VisualTokenError, aligned_visual_tokens, check_visual_tokens
from workloads.presets import is_llm_preset, llm_non_embedding_params
from workloads.storage import is_remote

from ..errors import UsageError
from ..plan.price import SYNTHETIC_TEXT_TOKENS
from ..scaling.analysis import (
    TABLE_SUFFIXES,
    Observations,
    observations_from_rows,
    observations_from_table,
    table_groups,
)
from ..scaling.design import Candidate, Pick, training_cost
from ..scaling.table import VLM_INPUTS, groups_of
from ..spec import Experiment, cell_key, parse
from ..spec.load import read_yaml
from .results import find_experiment, rows

TRAIN_TEXT_TOKENS = SYNTHETIC_TEXT_TOKENS  # the proposals' relative training cost of a cell


def label(llm: str, visual_tokens: int, compressor: str) -> str:
    """A candidate's name in listings: its cell key without task and seed."""
    return cell_key(llm, visual_tokens, compressor, "x", 0).rsplit("-x-", 1)[0]


def candidate_llms(exp: Experiment, obs: Observations, parameters: str | None = None) -> dict[str, float]:
    """LLM → N of every LLM proposals may train: ``fit.candidates.llms``, else the grid's. A size
    is the one its trained cells report, else its nominal size (``fit.parameters: nominal``), else
    a preset's, else counted from the model's config — as the study counts N."""
    from ..spec.sizes import nominal_size

    f = exp.spec.fit
    parameters = parameters or f.parameters
    grid_llms = list(dict.fromkeys(c[0] for c in exp.spec.grid.combinations()))
    llms = f.candidates.llms or grid_llms
    sizes = {llm: float(n) for llm, n in zip(obs.llms, obs.n)}
    out = {}
    for m in llms:
        nominal = nominal_size(m, f.nominal_sizes) if parameters == "nominal" else None
        if m in sizes:
            out[m] = sizes[m]
        elif nominal is not None:
            out[m] = nominal
        elif is_llm_preset(m) and parameters == "non_embedding":
            out[m] = float(llm_non_embedding_params(m))
        else:
            counted = _counted_size(exp, m, parameters)
            if counted is not None:
                out[m] = counted
    return out


def _counted_size(exp: Experiment, ref: str, parameters: str) -> float | None:
    """N of an LLM no cell has trained yet, counted from its config alone (non-embedding or total);
    None — with a line saying why — when its config cannot size it: it is left out of the
    candidates, and the fit, the frontier and the rest of the proposals go on without it."""
    import sys

    from workloads.model import llm_size_from_config

    if parameters == "nominal":
        raise UsageError(f"spec.fit.candidates.llms: {ref}: its name states no size; give it in spec.fit.nominal_sizes")
    try:
        return float(llm_size_from_config(exp.locate_llm(ref).location, total=parameters == "total"))
    except Exception as e:  # noqa: BLE001 — a broken config must not take the fit down with it
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        print(f"note: {ref}: left out of the proposals: its config cannot size it ({type(e).__name__}: {first})",
              file=sys.stderr)
        return None


def candidate_visual_tokens(exp: Experiment, compressor: str) -> list[int]:
    """The V proposals may use with ``compressor``: ``fit.candidates.visual_tokens`` (those it can
    produce), else every V it produces on whole blocks of the tower's patch grid (none straddling a
    patch); the grid's own V where the tower's grid cannot be read."""
    patch_grid = exp.spec.vision.grid(exp.locate_vision(exp.spec.vision.model))
    named = exp.spec.fit.candidates.visual_tokens
    if patch_grid is None:
        return sorted(set(named or [c[1] for c in exp.spec.grid.combinations() if c[2] == compressor]))
    if named is None:
        return aligned_visual_tokens(compressor, patch_grid)
    out = []
    for v in sorted(named):
        try:
            check_visual_tokens(compressor, v, patch_grid)
            out.append(v)
        except VisualTokenError:
            continue
    return out


def candidates_for(exp: Experiment, obs: Observations, parameters: str | None = None) -> list[Candidate]:
    """Candidate LLMs × their V × the grid's compressors (those the law is fitted on), less what has
    been observed."""
    combos = exp.spec.grid.combinations()
    sizes = candidate_llms(exp, obs, parameters)
    done = {(llm, int(v), comp) for llm, v, comp in zip(obs.llms, obs.v, obs.compressors)}
    t = exp.spec.training
    samples = (sum((st.steps or t.steps) * (st.batch_size or t.batch_size) for st in t.stages) if t.stages
               else t.steps * t.batch_size)  # every stage's samples count
    out = []
    for comp in exp.spec.fit.compressors or list(dict.fromkeys(c[2] for c in combos)):
        for m, n in sizes.items():
            for v in candidate_visual_tokens(exp, comp):
                if (m, v, comp) not in done:
                    out.append(Candidate(m, n, v, comp, training_cost(n, v, TRAIN_TEXT_TOKENS, samples),
                                         label(m, v, comp)))
    return out


def experiment_candidates(exp: Experiment, obs: Observations, table: list[dict[str, Any]],
                          parameters: str | None = None) -> list[Candidate]:
    """What the experiment could run next: :func:`candidates_for` minus every cell it already
    has, finished or not (any round) — the one candidate set of the run's summary, ``fit``,
    ``propose`` and ``report``."""
    planned = {(r["llm"], int(r["visual_tokens"]), r["compressor"]) for r in table}
    return [c for c in candidates_for(exp, obs, parameters) if (c.llm, c.visual_tokens, c.compressor) not in planned]


def next_spec(exp: Experiment, spec_doc: dict[str, Any], table: list[dict[str, Any]], picks: list[Pick],
              storage: str) -> str:
    """The study extended by the picks, as ready-to-run YAML: the same experiment — its name, its
    storage (``storage``: the root it lives under, written absolute) and its relative paths
    (``base_dir``: the original spec's folder) — whose grid is every cell the study has, each with
    the round that brought it, and the picks as the next round. Running it trains the picks only:
    the finished cells are found in the ledger, their MLflow runs under the same parent."""
    grid = exp.spec.grid
    doc = yaml.safe_load(yaml.safe_dump(spec_doc))
    spec = doc["spec"]
    g = spec["grid"]
    for axis in ("llms", "visual_tokens", "points"):
        g.pop(axis, None)
    g["compressors"] = list(dict.fromkeys(list(grid.compressors) + [p.candidate.compressor for p in picks]))
    spec.setdefault("storage", {})["path"] = storage if is_remote(storage) else str(Path(storage).resolve())
    if exp.source_dir is not None:
        spec["base_dir"] = str(exp.source_dir)
    planned = [r for r in table if "round" in r]
    this_round = max((int(r["round"]) for r in planned), default=1)
    lines = [_point(r["llm"], r["visual_tokens"], r["compressor"], r["task"], r["seed"], int(r["round"]))
             for r in planned]
    task, seed = grid.tasks[0], grid.seeds[0]
    for p in picks:
        c = p.candidate
        lines.append(_point(c.llm, c.visual_tokens, c.compressor, task, seed, this_round + 1)
                     + f"  # proposed: {p.reason}")
    out, inserted = [], False
    for line in yaml.safe_dump(doc, sort_keys=False).rstrip("\n").splitlines():
        out.append(line)
        if line.strip() == "grid:" and not inserted:
            out.append("    points:")
            out.extend(lines)
            inserted = True
    text = (f"# Proposed by vlmscale after round {this_round} of {exp.name}: every cell the study has, and round "
            f"{this_round + 1}'s picks.\n# `vlmscale run` on this file trains the picks into the same experiment, "
            "from any folder.\n" + "\n".join(out) + "\n")
    parse(yaml.safe_load(text), "next.yaml")  # what we write must validate
    return text


def _point(llm: str, v: int, compressor: str, task: str, seed: int, round_no: int) -> str:
    cell = f"llm: {json.dumps(llm)}, visual_tokens: {v}, compressor: {compressor}, task: {json.dumps(task)}, seed: {seed}"
    return f"      - {{{cell}{f', round: {round_no}' if round_no > 1 else ''}}}"


def load_source(source: str, metric: str = "error", storage: str | None = None, kind: str | None = None,
                inputs: tuple[str, ...] = VLM_INPUTS, group: str | None = None, joint: bool = False,
                parameters: str | None = None):
    """(experiment or None, its spec document or None, [(group label, observations)]) from an
    experiment's name or spec file, or a CSV/Parquet table: one group per ``group`` value, or the
    whole once with the group's codes when the fit is ``joint``."""
    if source.endswith(TABLE_SUFFIXES):
        return None, None, table_groups(source, metric, kind, inputs, group, joint)
    exp, exp_dir = find_experiment(source, storage)
    if exp_dir.manifest.is_file():
        manifest = exp_dir.read_manifest()
        spec_doc = read_yaml(manifest["spec_yaml"], str(exp_dir.manifest)) if "spec_yaml" in manifest else manifest["spec"]
    else:
        spec_doc = read_yaml(Path(source).read_text(), source)
    from ..spec.sizes import COUNTINGS
    from .results import fit_rows

    parameters = parameters or exp.spec.fit.parameters
    table = rows(exp, exp_dir, parameters)
    table = table if group == "compressor" else fit_rows(exp, table)  # split by compressor: a law each
    if group is None and inputs in (VLM_INPUTS, ("N", "V")):
        return exp, spec_doc, [("all", observations_from_rows(table, metric, kind, COUNTINGS[parameters].label))]
    import pandas as pd

    frame = pd.DataFrame([r for r in table if r.get("status") == "finished" and r.get("llm_params") is not None])
    where = f"{exp.name}'s cells"
    if joint:
        return exp, spec_doc, [("all", observations_from_table(frame, where, metric, kind, inputs, group))]
    return exp, spec_doc, [(label, observations_from_table(part, where, metric, kind, inputs))
                           for label, part in groups_of(frame, group, where)]

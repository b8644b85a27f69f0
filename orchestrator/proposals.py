"""An experiment in the engine's terms: its observations (from the ledger), the cells it could run
next, and the engine's picks written back as a spec that extends the same experiment.

The engine (orchestrator/scaling/) takes tables and settings; this module is what knows about
experiments, presets and compressors. No Ray, torch or MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workloads.compressors import feasible_visual_tokens
from workloads.presets import LLM_PRESETS, is_llm_preset, llm_non_embedding_params

from .errors import UsageError
from .results import locate, rows
from .scaling.analysis import TABLE_SUFFIXES, Observations, observations_from_rows, table_groups
from .scaling.design import Candidate, Pick, training_cost
from .scaling.table import VLM_INPUTS
from .spec import Experiment, cell_key, parse
from .spec.load import read_yaml

TRAIN_TEXT_TOKENS = 12.0  # a synthetic prompt + answer, for the training-cost estimate


def label(llm: str, visual_tokens: int, compressor: str) -> str:
    """A candidate's name in listings: its cell key without task and seed."""
    return cell_key(llm, visual_tokens, compressor, "x", 0).rsplit("-x-", 1)[0]


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
    patch_grid = exp.spec.vision.grid(exp.locate_vision(exp.spec.vision.model))
    vs = sorted({c[1] for c in combos})
    done = {(llm, int(v), comp) for llm, v, comp in zip(obs.llms, obs.v, obs.compressors)}
    t = exp.spec.training
    samples = (sum((st.steps or t.steps) * (st.batch_size or t.batch_size) for st in t.stages) if t.stages
               else t.steps * t.batch_size)  # every stage's samples count
    out = []
    for comp in list(dict.fromkeys(c[2] for c in combos)):
        feasible = feasible_visual_tokens(comp, patch_grid, limit=max(vs)) if patch_grid else vs
        for m in llms:
            if m not in sizes:
                continue
            for v in feasible:
                if (m, v, comp) not in done:
                    out.append(Candidate(m, sizes[m], v, comp, training_cost(sizes[m], v, TRAIN_TEXT_TOKENS, samples),
                                         label(m, v, comp)))
    return out


def experiment_candidates(exp: Experiment, obs: Observations, table: list[dict[str, Any]]) -> list[Candidate]:
    """What the experiment could run next: :func:`candidates_for` minus every cell it already
    has, finished or not (any round) — the one candidate set of the run's summary, ``fit``,
    ``propose`` and ``report``."""
    planned = {(r["llm"], int(r["visual_tokens"]), r["compressor"]) for r in table}
    return [c for c in candidates_for(exp, obs) if (c.llm, c.visual_tokens, c.compressor) not in planned]


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
    parse(yaml.safe_load(text), "next.yaml")  # what we write must validate
    return text


def load_source(source: str, metric: str = "error", storage: str | None = None, kind: str | None = None,
                inputs: tuple[str, str] = VLM_INPUTS, group: str | None = None):
    """(experiment or None, its spec document or None, [(group label, observations)]) from an
    experiment's name or spec file (one group), or a CSV/Parquet table (one group per ``group`` value)."""
    if source.endswith(TABLE_SUFFIXES):
        return None, None, table_groups(source, metric, kind, inputs, group)
    if inputs != VLM_INPUTS or group is not None:
        raise UsageError("--inputs and --group apply to a table (CSV or Parquet); an experiment's inputs are N and V")
    exp, exp_dir = locate(source, storage)
    if exp_dir.manifest.is_file():
        manifest = exp_dir.read_manifest()
        spec_doc = read_yaml(manifest["spec_yaml"], str(exp_dir.manifest)) if "spec_yaml" in manifest else manifest["spec"]
    else:
        spec_doc = read_yaml(Path(source).read_text(), source)
    return exp, spec_doc, [("all", observations_from_rows(rows(exp, exp_dir), metric, kind))]

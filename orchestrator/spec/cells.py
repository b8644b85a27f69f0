"""Grid points as cells: each with a deterministic, human-readable key and its complete workload
config — the one place where the spec's blocks become ``workloads.config`` objects."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workloads.config import (
    BenchmarkConfig,
    CellConfig,
    DataConfig,
    EvalConfig,
    FaultConfig,
    ModelConfig,
    PretrainConfig,
    StageConfig,
    TrainConfig,
)

from ..errors import SpecError
from .document import Spec

# spec field → workload field, for the blocks whose names differ; everything else maps by name
VISION_TO_MODEL = {"model": "vision", "freeze": "freeze_vision", "feature_layer": "vision_feature_layer",
                   "kv_layers": "kv_layers", "compressor_heads": "compressor_heads", "projector_from": "projector_from",
                   "compressor_from": "compressor_from"}
DATA_TO_DATA = ("source", "train_size", "eval_size", "cells", "questions_per_image", "llava_train", "llava_eval",
                "image_root", "tokenizer", "conversation", "image_aspect_ratio", "max_length", "group_by_length",
                "group_by_modality_length", "on_bad_record")
DATA_PATHS = ("llava_train", "llava_eval", "image_root")  # located against the spec file's folder
TRAINING_DERIVED = ("lr", "threads_per_worker", "stages")  # decided per cell below, not copied
# what a cell's result does not depend on: how many threads a worker uses (a test holds its
# metrics equal whatever they are) and the fault drill (a drilled cell resumes bit-identically)
NOT_IDENTITY = ("train.threads_per_worker", "fault")
# settings added after cells began to be known by their settings, each with the value that trains
# as cells trained before it existed: left out of the settings at that value, so an upgrade does
# not turn every finished cell into a "changed" one (a test pins a cell's digest across versions).
# ``*`` stands for any index of a list (each stage, each benchmark).
LATER = {"train.attention": "sdpa", "train.fused_optimizer": False, "train.compile": "none", "train.logits": "all",
         "data.group_by_length": False, "train.betas": [0.9, 0.95], "data.group_by_modality_length": False,
         "train.stages.*.image_aspect_ratio": None, "eval.benchmarks.*.max_new_tokens": None,
         "eval.benchmarks.*.prompt_suffix": None, "data.on_bad_record": "fail"}
# A cell without benchmarks generates nothing: its generation length shapes nothing and stays at
# the value such cells were known by (the default was 16 before it became LLaVA's 128).
NO_BENCHMARKS = {"eval.max_new_tokens": 16}
_NONE = object()


class _Experiment(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> Spec: ...

    def locate_llm(self, ref: str): ...

    def locate_vision(self, ref: str): ...

    def locate_file(self, ref: str | None) -> str | None: ...


def slug(value: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return s or "x"


@dataclass(frozen=True)
class Cell:
    """A grid point. ``config`` is what its workers run (paths resolved on this machine);
    ``settings`` is what its result depends on — every setting, models and files named as the spec
    names them, the pretrained tower by its pretraining — and ``digest`` their hash: a finished
    cell or a checkpoint counts under a spec only while the digest is unchanged, wherever the
    experiment and its files live."""

    key: str
    llm: str
    visual_tokens: int
    compressor: str
    task: str
    seed: int
    config: CellConfig
    settings: dict[str, Any] = field(default_factory=dict, compare=False)
    digest: str = ""

    def params(self) -> dict[str, Any]:
        return {"cell": self.key, "llm": self.llm, "visual_tokens": self.visual_tokens,
                "compressor": self.compressor, "task": self.task, "seed": self.seed}


def cell_key(llm: str, visual_tokens: int, compressor: str, task: str, seed: int) -> str:
    """``<llm>-v<V>-<compressor>-<task>-s<seed>``, lowercase [a-z0-9-]; long model ids get a short hash."""
    llm_part = slug(llm.rsplit("/", 1)[-1])
    if llm_part != slug(llm) or len(llm_part) > 24:
        llm_part = f"{llm_part[:24].strip('-')}-{hashlib.sha1(llm.encode()).hexdigest()[:6]}"
    return f"{llm_part}-v{visual_tokens}-{slug(compressor)}-{slug(task)}-s{seed}"


def tower(s: Spec) -> PretrainConfig | None:
    """The tiny vision tower the experiment pretrains (None: it uses its vision model as it is)."""
    p = s.vision.pretrain
    return None if p is None else PretrainConfig(p.steps, p.batch_size, p.lr, s.vision.model, 0, s.data.cells)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} → {"train.lr": 1}; lists of mappings by index (train.stages.0.steps)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{name}.{i}."))
        else:
            out[name] = list(v) if isinstance(v, tuple) else v
    return out


def _later(key: str) -> Any:
    """The value at which a setting added later is left out (``_NONE``: not one of them)."""
    return LATER.get(re.sub(r"\.\d+\.", ".*.", key), _NONE)


def revisions(portable: CellConfig) -> dict[str, int]:
    """What the code computes, where it changed after cells began to be known by their settings: a
    compressor's ``revision`` and LLaVA data's layout, recorded above 1 (so the results of the old
    computation stop counting, and a changed cell says why)."""
    from workloads.compressors import kind
    from workloads.data.llava import LAYOUT_REVISION

    out = {"model.compressor_revision": kind(portable.model.compressor).revision}
    if portable.data.source == "llava":
        out["data.llava_layout_revision"] = LAYOUT_REVISION
    return {k: v for k, v in out.items() if v > 1}


def identity(portable: CellConfig, pretrained: PretrainConfig | None) -> tuple[dict[str, Any], str]:
    """(settings, digest) of a cell from its config with unresolved references (see :class:`Cell`)."""
    import dataclasses

    settings = {k: v for k, v in flatten(portable.to_dict()).items()
                if not any(k == n or k.startswith(n + ".") for n in NOT_IDENTITY) and _later(k) != v}
    if not portable.eval.benchmarks:
        settings.update(NO_BENCHMARKS)
    settings.update(revisions(portable))
    if pretrained is not None:
        settings.update(flatten(dataclasses.asdict(pretrained), "model.vision_pretrain."))
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return settings, hashlib.sha256(blob).hexdigest()[:16]


def train_config(s: Spec, llm: str, seed: int, lrs: dict[str, float] | None = None, locate=lambda p: p) -> TrainConfig:
    """The training config of a cell of ``llm``. With a calibration block its base rate is the one
    found for ``llm`` (``lrs``; before that, the middle of the range), used as found — no width
    scaling; workloads.optim turns the base rate into every step's."""
    fields = s.training.model_dump(exclude=set(TRAINING_DERIVED))
    fields["betas"] = tuple(fields["betas"])
    cal = s.training.calibration
    if cal is None:
        lr = s.training.lr
    else:
        lr, fields["lr_reference_width"] = (lrs or {}).get(llm, cal.middle), None
    assert isinstance(lr, float)  # a number, or the calibration block handled above
    threads = s.training.threads_per_worker or max(1, int(s.resources.cpus_per_worker))
    t = s.training
    stages = tuple(StageConfig(st.name, tuple(st.trainable), st.steps or t.steps, st.lr or lr,
                               st.batch_size or t.batch_size, locate(st.data), st.image_aspect_ratio)
                   for st in t.stages)
    return TrainConfig(**fields, lr=lr, threads_per_worker=threads, seed=seed, stages=stages)


def make_cell(exp: _Experiment, llm: str, v: int, comp: str, task: str, seed: int,
              vision_path: str | None = None, lrs: dict[str, float] | None = None) -> Cell:
    """One cell of the experiment — a grid point or a later round's proposal — with its complete
    workload config. ``vision_path`` replaces the vision preset by its pretrained copy; ``lrs``
    holds the calibrated learning rate per LLM."""
    key = cell_key(llm, v, comp, task, seed)
    point = (llm, v, comp, task, seed)
    config = _config(exp, point, key, lrs, lambda r: exp.locate_llm(r).location,
                     lambda r: vision_path or exp.locate_vision(r).location, exp.locate_file)
    portable = _config(exp, point, key, lrs, _as_written, _as_written, _as_written)
    settings, digest = identity(portable, tower(exp.spec))
    return Cell(key, llm, v, comp, task, seed, config, settings, digest)


def _as_written(ref):
    return ref


def _config(exp: _Experiment, point: tuple, key: str, lrs: dict[str, float] | None, llm_at: Callable,
            vision_at: Callable, file_at: Callable) -> CellConfig:
    s = exp.spec
    llm, v, comp, task, seed = point
    vision = {dst: getattr(s.vision, src) for src, dst in VISION_TO_MODEL.items()}
    vision["vision"] = vision_at(vision["vision"])
    vision["kv_layers"] = tuple(vision["kv_layers"])
    vision["projector_from"] = file_at(vision["projector_from"])
    vision["compressor_from"] = file_at(vision["compressor_from"])
    data = {f: getattr(s.data, f) for f in DATA_TO_DATA}
    if data["llava_train"] is None and s.training.stages and s.data.source == "llava":
        data["llava_train"] = s.training.stages[-1].data  # every stage names its data: the last one's
    data.update({f: file_at(data[f]) for f in DATA_PATHS})
    if data["tokenizer"] is not None:
        data["tokenizer"] = llm_at(data["tokenizer"])
    fault = s.fault_injection
    e = s.evaluation
    return CellConfig(
        model=ModelConfig(llm=llm_at(llm), compressor=comp, visual_tokens=v, **vision),
        data=DataConfig(tasks=(task,), seed=seed, **data),
        train=train_config(s, llm, seed, lrs, file_at),
        eval=EvalConfig(tuple(BenchmarkConfig(b.name, file_at(b.questions), b.scorer, file_at(b.image_root),
                                              b.max_new_tokens, b.prompt_suffix) for b in e.benchmarks),
                        e.max_new_tokens, e.batch_size),
        fault=FaultConfig(fault.step, fault.during) if fault and key in fault.cells else None,
    )


def expand(exp: _Experiment, vision_path: str | None = None, lrs: dict[str, float] | None = None) -> list[Cell]:
    """Every grid point as a :class:`Cell` (see :func:`make_cell`)."""
    cells = [make_cell(exp, *point, vision_path=vision_path, lrs=lrs) for point in exp.spec.grid.combinations()]
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise SpecError(f"{exp.name}: two grid points map to the same cell key; rename an LLM")
    return cells

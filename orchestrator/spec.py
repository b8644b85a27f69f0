"""The experiment spec: a Kubernetes-style ``ScalingExperiment`` document, validated with pydantic.

Pure and fast: imports neither ray, torch, mlflow nor kubernetes. Unknown fields are refused
everywhere, every grid point is checked against the compressor rules before anything runs, and
each grid point gets a deterministic, human-readable cell key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig

from .kube.spec import RFC1123_LABEL, Kubernetes, check_dns_label, check_quantity
from .profiling import Profile
from workloads.presets import VISION_PRESETS, is_vision_preset, vision_shape
from workloads.token_rules import VisualTokenError, check_visual_tokens

API_VERSION = "vlmscale.dev/v1alpha1"
KIND = "ScalingExperiment"
# Hugging Face repo ids / local paths: no shell metacharacters, no whitespace
MODEL_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/\-]*$")
SYNTHETIC_TASKS = ("shapes", "text", "reason")


class SpecError(Exception):
    """One clear line: the file, the field path, what is wrong and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _model_ref(value: str, what: str) -> str:
    if not MODEL_REF.match(value) or ".." in value.split("/"):
        raise ValueError(
            f"{value!r} is not a safe {what} name: use a preset name, a Hugging Face id like 'Qwen/Qwen2-0.5B' "
            "or a path made of letters, digits, '.', '_', '-' and '/'"
        )
    return value


LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class Metadata(_Strict):
    name: str = Field(description="Experiment name: an RFC 1123 label (lowercase letters, digits, '-'; max 63)")
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels added to every object")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY.match(key) or len(key.split("/")[-1]) > 63:
                raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
            if not LABEL_VALUE.match(str(value)):
                raise ValueError(f"label {key}: {value!r} is not a valid Kubernetes label value "
                                 "(at most 63 letters, digits, '-', '_', '.')")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 63 or not RFC1123_LABEL.match(v):
            raise ValueError(
                f"{v!r} is not an RFC 1123 label: use at most 63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v


class GridPoint(_Strict):
    llm: str
    visual_tokens: int = Field(ge=1)
    compressor: Literal["none", "avgpool", "resampler", "quecc"] | None = None  # default: compressors[0]
    task: str | None = None  # default: tasks[0]
    seed: int | None = Field(None, ge=0)  # default: seeds[0]

    @field_validator("llm")
    @classmethod
    def _llm(cls, v: str) -> str:
        return _model_ref(v, "LLM")


class Grid(_Strict):
    """Either the axes ``llms`` × ``visual_tokens`` (× compressors × tasks × seeds), or explicit ``points``."""

    llms: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="LLM presets or Hugging Face names/paths")
    visual_tokens: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] | None = None
    compressors: Annotated[list[Literal["none", "avgpool", "resampler", "quecc"]], Field(min_length=1)] = ["quecc"]
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = [0]
    tasks: Annotated[list[str], Field(min_length=1)] = ["shapes"]
    points: Annotated[list[GridPoint], Field(min_length=1)] | None = Field(
        None, description="Explicit cells instead of the llms x visual_tokens product")

    @field_validator("llms")
    @classmethod
    def _llms(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            _model_ref(name, "LLM")
        if v and len(set(v)) != len(v):
            raise ValueError("lists an LLM twice")
        return v

    @field_validator("visual_tokens", "seeds", "compressors", "tasks")
    @classmethod
    def _unique(cls, v: list | None) -> list | None:
        if v and len(set(v)) != len(v):
            raise ValueError("lists a value twice")
        return v

    @model_validator(mode="after")
    def _axes_or_points(self) -> "Grid":
        if self.points is None:
            missing = [f for f in ("llms", "visual_tokens") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{missing[0]} is required (or list explicit points)")
        elif self.llms is not None or self.visual_tokens is not None:
            raise ValueError("give either llms and visual_tokens, or points, not both")
        return self

    def combinations(self) -> list[tuple[str, int, str, str, int]]:
        """(llm, V, compressor, task, seed) of every cell, in a stable order."""
        if self.points is not None:
            out = [(p.llm, p.visual_tokens, p.compressor or self.compressors[0], p.task or self.tasks[0],
                    self.seeds[0] if p.seed is None else p.seed) for p in self.points]
            if len(set(out)) != len(out):
                raise ValueError("points lists a cell twice")
            return out
        return list(itertools.product(self.llms, self.visual_tokens, self.compressors, self.tasks, self.seeds))


class VisionPretraining(_Strict):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)


class Vision(_Strict):
    model: str = Field("vit-tiny", description="A tiny preset or a Hugging Face CLIP/SigLIP name/path")
    freeze: bool = True
    # presets only: pretrain the tiny tower once per experiment (stand-in for a pretrained CLIP)
    pretrain: VisionPretraining | None = VisionPretraining()
    feature_layer: int = -1
    kv_layers: list[int] = [-2, -1]
    compressor_heads: int = Field(4, ge=1)
    patch_grid: int | None = Field(None, ge=1, description="Patch grid side of a hub model (e.g. 24 for ViT-L/14-336)")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _model_ref(v, "vision model")

    @model_validator(mode="after")
    def _pretrain_only_presets(self) -> "Vision":
        if self.pretrain is not None and not is_vision_preset(self.model):
            raise ValueError(f"pretrain applies to tiny presets only ({', '.join(VISION_PRESETS)}); "
                             f"set pretrain: null for the pretrained model {self.model!r}")
        return self

    def grid(self) -> int | None:
        """The patch grid side when known without downloading anything: a preset, an explicit
        ``patch_grid``, or a local checkpoint's ``config.json``; otherwise checked at build time."""
        if is_vision_preset(self.model):
            return vision_shape(self.model).grid
        if self.patch_grid is not None:
            return self.patch_grid
        config = Path(self.model) / "config.json"
        if config.is_file():
            c = json.loads(config.read_text())
            c = c.get("vision_config", c)
            if "image_size" in c and "patch_size" in c:
                return int(c["image_size"]) // int(c["patch_size"])
        return None


class Data(_Strict):
    source: Literal["synthetic", "llava"] = "synthetic"
    train_size: int = Field(50_000, ge=1)
    eval_size: int = Field(512, ge=1)
    cells: int = Field(4, ge=2, le=9)
    questions_per_image: int = Field(1, ge=1)
    llava_train: str | None = None
    llava_eval: str | None = None
    image_root: str | None = None
    tokenizer: str | None = None

    @model_validator(mode="after")
    def _llava(self) -> "Data":
        if self.source == "llava" and not self.llava_train:
            raise ValueError("source 'llava' needs llava_train: the path of a LLaVA-format JSON file")
        return self


class LRCalibration(_Strict):
    """Search the learning rate per LLM size before the grid (Ray Tune, Optuna TPE, ASHA)."""

    low: float = Field(gt=0, description="Smallest learning rate tried")
    high: float = Field(gt=0, description="Largest learning rate tried")
    log: bool = Field(True, description="Sample on a log scale")
    trials: int = Field(6, ge=2, description="Trials per LLM size")
    steps: int | None = Field(None, ge=1, description="Steps of a trial (default: a third of training.steps)")
    visual_tokens: int | None = Field(None, ge=1, description="V to calibrate at (default: the grid's smallest)")
    seed: int = Field(0, ge=0, description="Seed of the TPE sampler (and of the trials' data)")
    concurrent_trials: int = Field(
        1, ge=1, description="Trials at once per size; 1 keeps the search deterministic for a seed (with more, "
                             "TPE and ASHA decide on whichever trial reports first)")

    @model_validator(mode="after")
    def _range(self) -> "LRCalibration":
        if self.high <= self.low:
            raise ValueError(f"high ({self.high:g}) must be larger than low ({self.low:g})")
        return self

    def trial_steps(self, training_steps: int) -> int:
        return self.steps or max(1, training_steps // 3)


class Training(_Strict):
    steps: int = Field(600, ge=1)
    batch_size: int = Field(32, ge=1, description="Global batch: the same for every cell, whatever the workers")
    grad_accum: int = Field(1, ge=1)
    micro_batch_size: int | None = Field(
        None, ge=1, description="Per-device micro-batch; accumulation steps = batch_size / (workers x this)")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (saves memory)")
    lr: float | LRCalibration = Field(
        2e-3, description="A learning rate (> 0), or a calibration block: the best per LLM size is searched first")
    lr_reference_width: int | None = Field(None, ge=1, description="Scale lr by this / the LLM's hidden size")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    eval_every: int = Field(0, ge=0)
    log_every: int = Field(20, ge=1)
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: Literal[1, 2, 3] = 2
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: mixed precision (DDP autocast, DeepSpeed bf16)")
    threads_per_worker: int | None = Field(
        None, ge=1, description="Intra-op threads of each worker; default: resources.cpus_per_worker (at least 1)")

    @field_validator("lr", mode="before")
    @classmethod
    def _lr(cls, v):
        """A number, or a calibration block — each with its own errors (not a union's first one)."""
        if isinstance(v, dict):
            try:
                return LRCalibration.model_validate(v)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown field of the calibration block"
                raise ValueError(f"calibration {where + ': ' if where else ''}{msg}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"give a positive learning rate or a calibration block (low, high, ...), got {v!r}")
        return float(v)

    @property
    def calibration(self) -> "LRCalibration | None":
        return self.lr if isinstance(self.lr, LRCalibration) else None

    @model_validator(mode="after")
    def _one_batch_split(self) -> "Training":
        if self.micro_batch_size is not None and self.grad_accum != 1:
            raise ValueError("set micro_batch_size or grad_accum, not both: with micro_batch_size the "
                             "accumulation steps follow from batch_size and the number of workers")
        return self


class FaultInjection(_Strict):
    """Crash the named cells once at a step (a drill for crash recovery)."""

    cells: list[str]
    step: int = Field(ge=1)
    during: Literal["step", "checkpoint"] = Field(
        "step", description="checkpoint: crash while writing that step's checkpoint, leaving it half-written")


class Resources(_Strict):
    workers_per_cell: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_concurrent_cells: int | None = Field(None, ge=1)
    memory_per_worker: str = Field("16Gi", description="Kubernetes memory quantity per worker pod")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    queue: str | None = Field(None, description="Kueue LocalQueue: the RayJob is created suspended and admitted "
                                                "whole (gang scheduling) when the queue has room")
    launcher: Literal["auto", "ray_train"] = Field(
        "auto", description="auto: a single-worker DDP cell trains in its Tune trial's own process (no Ray Train "
                            "start-up per cell); ray_train: every cell as a Ray Train job")

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, v: str) -> str:
        return check_quantity(v)

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str | None) -> str | None:
        return None if v is None else check_dns_label(v)


class Tracking(_Strict):
    mlflow_uri: str | None = Field(None, description="Default: a sqlite store inside the experiment directory")
    experiment_name: str | None = None


class Storage(_Strict):
    path: str = Field("./vlmscale-runs", description="A local directory or s3://bucket/prefix")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if v.startswith("s3://"):
            if not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[A-Za-z0-9._\-/]*)?$", v):
                raise ValueError(f"{v!r} is not a valid s3://bucket/prefix")
        elif "://" in v:
            raise ValueError(f"{v!r}: only local paths and s3:// are supported")
        return v


class Failure(_Strict):
    retries_per_cell: int = Field(2, ge=0)
    job_retries: int = Field(2, ge=0, description="RayJob backoffLimit: reruns of the whole driver on a cluster")


class Fit(_Strict):
    enabled: bool = True
    form: Literal["multiplicative", "additive"] = "multiplicative"
    loss: Literal["squared", "huber_log"] = "squared"
    metric: str = Field("error", description="The cell metric to fit, e.g. error, eval_loss, error/shapes")
    metric_kind: Literal["error", "loss"] | None = Field(
        None, description="error: a rate in (0, 1); loss: any positive value, fitted raw (e.g. nats). "
                          "Default: loss when the metric's name contains 'loss', else error")
    text_tokens: float = Field(0.0, ge=0)
    bootstrap: int = Field(200, ge=0)
    ci_level: float = Field(0.9, gt=0, lt=1, description="Coverage of the bootstrap intervals")
    cross_validate: bool = Field(True, description="Leave-one-out and largest-LLM hold-out errors")
    propose: int = Field(4, ge=0)


class Import(_Strict):
    """Finished cells to count without training them: another experiment's, or a results CSV's."""

    experiment: str | None = Field(None, description="Name of a finished experiment to import cells from")
    storage: str | None = Field(None, description="Where that experiment lives (default: this one's storage)")
    results: str | None = Field(None, description="A CSV written by `vlmscale results NAME --format csv` "
                                                  "(relative paths: from the working directory)")

    @model_validator(mode="after")
    def _one_source(self) -> "Import":
        if (self.experiment is None) == (self.results is None):
            raise ValueError("give either experiment (with optional storage) or results, not both and not neither")
        if self.experiment is not None and (len(self.experiment) > 63 or not RFC1123_LABEL.match(self.experiment)):
            raise ValueError(f"{self.experiment!r} is not an experiment name (an RFC 1123 label)")
        if self.results is not None and self.storage is not None:
            raise ValueError("storage applies to an imported experiment, not to a results CSV")
        return self


class Rounds(_Strict):
    """A study in rounds: the grid, then each round the cells the fitted law most wants next."""

    count: int = Field(1, ge=1, description="Rounds in all; 1 runs the grid only")
    cells_per_round: int | None = Field(None, ge=1, description="Cells proposed per round (default: fit.propose)")
    stop_v_star_ci_width: float | None = Field(
        None, gt=0, description="Stop early once the frontier's V* interval is narrower than this (in tokens)")


class Spec(_Strict):
    grid: Grid
    vision: Vision = Vision()
    data: Data = Data()
    training: Training = Training()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    storage: Storage = Storage()
    failure: Failure = Failure()
    fit: Fit = Fit()
    kubernetes: Kubernetes = Kubernetes()
    fault_injection: FaultInjection | None = None
    imports: list[Import] = Field(default_factory=list, description="Finished cells to count without retraining")
    rounds: Rounds = Rounds()
    profile: Profile = Profile()

    @model_validator(mode="after")
    def _consistent(self) -> "Spec":
        combos = self.grid.combinations()
        if self.data.source == "synthetic":
            bad = [t for t in {c[3] for c in combos} if t not in SYNTHETIC_TASKS]
            if bad:
                raise ValueError(f"grid.tasks: unknown synthetic task {bad[0]!r}; choose from {', '.join(SYNTHETIC_TASKS)}")
        t = self.training
        per_step = t.micro_batch_size or t.grad_accum
        divisor = self.resources.workers_per_cell * per_step
        if t.batch_size % divisor:
            what = "micro_batch_size" if t.micro_batch_size else "grad_accum"
            raise ValueError(f"training.batch_size {t.batch_size} must be a multiple of "
                             f"resources.workers_per_cell x training.{what} = {divisor}")
        grid = self.vision.grid()
        if grid is not None:
            for v, compressor in sorted({(c[1], c[2]) for c in combos}):
                try:
                    check_visual_tokens(compressor, v, grid)
                except VisualTokenError as e:
                    raise ValueError(f"grid.visual_tokens: {v} with compressor {compressor!r}: {e}") from None
        return self


STORAGE_ENV = "VLMSCALE_STORAGE"


class Experiment(_Strict):
    apiVersion: Literal["vlmscale.dev/v1alpha1"]
    kind: Literal["ScalingExperiment"]
    metadata: Metadata
    spec: Spec
    _source_dir: Path | None = PrivateAttr(None)  # the spec file's folder, when loaded from a file

    def storage_root(self, override: str | None = None) -> str:
        """Where the experiment's directory lives: ``override`` (``--storage``), else
        ``$VLMSCALE_STORAGE``, else ``spec.storage.path`` — a relative one against the spec file's
        folder, so every command finds the same state from any working directory."""
        chosen = override or os.environ.get(STORAGE_ENV)
        if chosen:
            return chosen
        path = self.spec.storage.path
        if path.startswith("s3://") or self._source_dir is None or Path(path).expanduser().is_absolute():
            return path
        return str(self._source_dir / path)

    @property
    def name(self) -> str:
        return self.metadata.name

    def cells(self) -> list["Cell"]:
        return expand(self)

    def digest(self) -> str:
        """A stable hash of the validated spec (same experiment ⇔ same digest)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# grid expansion


def slug(value: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return s or "x"


@dataclass(frozen=True)
class Cell:
    key: str
    llm: str
    visual_tokens: int
    compressor: str
    task: str
    seed: int
    config: CellConfig

    def params(self) -> dict[str, Any]:
        return {"cell": self.key, "llm": self.llm, "visual_tokens": self.visual_tokens,
                "compressor": self.compressor, "task": self.task, "seed": self.seed}


def cell_key(llm: str, visual_tokens: int, compressor: str, task: str, seed: int) -> str:
    """``<llm>-v<V>-<compressor>-<task>-s<seed>``, lowercase [a-z0-9-]; long model ids get a short hash."""
    llm_part = slug(llm.rsplit("/", 1)[-1])
    if llm_part != slug(llm) or len(llm_part) > 24:
        llm_part = f"{llm_part[:24].strip('-')}-{hashlib.sha1(llm.encode()).hexdigest()[:6]}"
    return f"{llm_part}-v{visual_tokens}-{slug(compressor)}-{slug(task)}-s{seed}"


def make_cell(exp: Experiment, llm: str, v: int, comp: str, task: str, seed: int,
              vision_path: str | None = None, lrs: dict[str, float] | None = None) -> Cell:
    """One cell of the experiment — a grid point or a later round's proposal — with its complete
    workload config. ``vision_path`` replaces the vision preset by its pretrained copy; ``lrs``
    holds the calibrated learning rate per LLM (used as is: no width scaling). Before calibration
    a cell shows the geometric middle of the search range."""
    s = exp.spec
    training = s.training.model_dump()
    cal = s.training.calibration
    if cal is not None:
        training["lr"] = (lrs or {}).get(llm, (cal.low * cal.high) ** 0.5)
        training["lr_reference_width"] = None
    threads = s.training.threads_per_worker or max(1, int(s.resources.cpus_per_worker))
    key = cell_key(llm, v, comp, task, seed)
    fault = s.fault_injection
    config = CellConfig(
        model=ModelConfig(
            llm=llm, vision=vision_path or s.vision.model, compressor=comp, visual_tokens=v,
            vision_feature_layer=s.vision.feature_layer, kv_layers=tuple(s.vision.kv_layers),
            compressor_heads=s.vision.compressor_heads, freeze_vision=s.vision.freeze,
        ),
        data=DataConfig(
            source=s.data.source, tasks=(task,), seed=seed, train_size=s.data.train_size,
            eval_size=s.data.eval_size, cells=s.data.cells, questions_per_image=s.data.questions_per_image,
            llava_train=s.data.llava_train, llava_eval=s.data.llava_eval, image_root=s.data.image_root,
            tokenizer=s.data.tokenizer,
        ),
        train=TrainConfig(**{**training, "threads_per_worker": threads}, seed=seed,
                          fail_once_at_step=fault.step if fault and key in fault.cells else None,
                          fail_during_checkpoint=bool(fault and key in fault.cells and fault.during == "checkpoint")),
    )
    return Cell(key, llm, v, comp, task, seed, config)


def expand(exp: Experiment, vision_path: str | None = None, lrs: dict[str, float] | None = None) -> list[Cell]:
    """Every grid point as a :class:`Cell` (see :func:`make_cell`)."""
    cells = [make_cell(exp, *point, vision_path=vision_path, lrs=lrs) for point in exp.spec.grid.combinations()]
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise SpecError(f"{exp.name}: two grid points map to the same cell key; rename an LLM")
    return cells


# ------------------------------------------------------------------------------------------------
# loading


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
    where = _loc(tuple(loc)) or "(document)"
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling (see `vlmscale schema`)"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "literal_error" or kind.endswith("_type") or kind.endswith("_parsing"):
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{where}: {msg}"


def _all_errors(e: ValidationError, source: str) -> str:
    """Every validation error of the document, in one line: fix them all in one go."""
    seen = list(dict.fromkeys(_describe(err) for err in e.errors()))
    return f"{source}: " + "; ".join(seen)


def parse(document: Any, source: str = "<spec>") -> Experiment:
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping with apiVersion, kind, metadata and spec")
    try:
        exp = Experiment.model_validate(document)
    except ValidationError as e:
        raise SpecError(_all_errors(e, source)) from None
    expand(exp)  # key collisions
    return exp


def load(path: str | Path) -> Experiment:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such file")
    from .limits import check_spec_file

    check_spec_file(p)
    try:
        document = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{p}: malformed YAML{where}: {problem}") from None
    exp = parse(document, str(p))
    exp._source_dir = p.resolve().parent
    return exp


def json_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema()
    schema["$id"] = f"https://{API_VERSION}/scalingexperiment.schema.json"
    schema["title"] = KIND
    return schema

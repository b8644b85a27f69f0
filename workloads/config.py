"""Typed configuration of one grid cell: model, data, training — and an optional fault drill.

Frozen dataclasses that round-trip through plain dicts (Ray passes the cell config to every
worker as a dict; MLflow logs it flat). No torch at import time: the orchestrator builds these
while validating a spec. Their defaults are the experiment spec's defaults too (the spec's blocks
take them from here), so a cell built by hand and one built from a spec agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from .data.chat import FORMATS
from .scorers import SCORERS

Strategy = Literal["ddp", "fsdp", "deepspeed"]
Attention = Literal["sdpa", "eager", "flash_attention_2"]
Compile = Literal["none", "blocks"]
Logits = Literal["all", "supervised"]
Precision = Literal["fp32", "bf16"]
Source = Literal["synthetic", "llava"]
DrillMoment = Literal["step", "checkpoint"]
ProfileDtype = Literal["auto", "float32", "bfloat16", "float16"]
ZeroStage = Literal[1, 2, 3]
# registries' names: a Literal of them at run time (the spec's schema), str to a type checker
if TYPE_CHECKING:
    Conversation = str
    ScorerName = str
else:
    Conversation = Literal[("auto", *FORMATS)]
    ScorerName = Literal[tuple(SCORERS)]
AspectRatio = Literal["pad", "square"]
BadRecord = Literal["fail", "skip"]


@dataclass(frozen=True)
class ModelConfig:
    llm: str = "tiny-s"  # a preset of workloads.presets or a Hugging Face name / local path
    vision: str = "vit-tiny"  # likewise (CLIP or SigLIP vision towers)
    compressor: str = "avgpool"
    visual_tokens: int = 16
    # hidden_states index the projector reads (LLaVA uses the penultimate layer of a deep CLIP)
    vision_feature_layer: int = -1
    # hidden_states indices QueCC builds its keys/values from (the study: 12, 16, 22, 23 of 24)
    kv_layers: tuple[int, ...] = (-2, -1)
    compressor_heads: int = 4
    freeze_vision: bool = True  # a pretrained tower, as in the study
    freeze_llm: bool = False
    # start these parts from saved weights (LLaVA's mm_projector.bin; a vlmscale checkpoint's model.pt)
    projector_from: str | None = None
    compressor_from: str | None = None


@dataclass(frozen=True)
class DataConfig:
    source: Source = "synthetic"
    tasks: tuple[str, ...] = ("shapes",)  # synthetic tasks; ignored for llava
    seed: int = 0
    train_size: int = 50_000
    eval_size: int = 512
    cells: int = 4  # synthetic scenes are cells×cells
    questions_per_image: int = 1  # training turns per image (dense supervision); eval always asks one
    llava_train: str | None = None  # LLaVA-format JSON; image paths relative to image_root
    llava_eval: str | None = None
    image_root: str | None = None
    user_prefix: str = "USER:"
    assistant_prefix: str = "ASSISTANT:"
    tokenizer: str | None = None  # defaults to the LLM's own tokenizer, or the synthetic word-level one
    # how turns become tokens (workloads/data/chat.py): auto = plain for synthetic data, else the
    # tokenizer's chat template if it has one, else LLaVA's v1 conversation
    conversation: Conversation = "auto"
    image_aspect_ratio: AspectRatio = "pad"  # pad: to a square in the processor's mean colour (LLaVA-1.5); square: as is
    max_length: int = 2048  # tokens of a training sequence (cut after it, never inside the image's placeholders)
    # LLaVA data: batches of similar length (a megabatch of batches sorted by record size, the batches
    # shuffled), so short conversations do not pay for a long one's padding
    group_by_length: bool = False
    # LLaVA data as LLaVA's trainer groups it (group_by_modality_length): each global batch all image
    # or all text-only records, sorted by length and dealt evenly to the micro-batches
    group_by_modality_length: bool = False
    # LLaVA data: a bad record (a malformed conversation, an image missing or undecodable) ends the
    # cell naming its file and line (fail), or is left out and counted (skip: data/skipped_records)
    on_bad_record: BadRecord = "fail"

    def __post_init__(self):
        if self.source == "llava" and not self.llava_train:
            raise ValueError("data.llava_train is required when data.source is 'llava'")
        if self.group_by_length and self.group_by_modality_length:
            raise ValueError("data: group_by_length or group_by_modality_length, not both")


Part = Literal["compressor", "projector", "llm", "vision"]


@dataclass(frozen=True)
class StageConfig:
    """One phase of a cell's training (LLaVA-1.5: the projector on captions, then everything on
    instructions): its own data, trainable parts, steps, learning rate and global batch."""

    name: str
    trainable: tuple[Part, ...]
    steps: int
    lr: float
    batch_size: int
    data: str | None = None  # a LLaVA-format file; None: data.llava_train (or the synthetic training set)
    image_aspect_ratio: AspectRatio | None = None  # None: data.image_aspect_ratio (LLaVA: square, then pad)

    def aspect_ratio(self, data: DataConfig) -> str:
        return self.image_aspect_ratio or data.image_aspect_ratio


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch_size: int = 32  # global, across workers and accumulation steps
    grad_accum: int = 1
    # per-device micro-batch; when set, accumulation is derived so the global batch stays
    # batch_size whatever the number of workers (grad_accum must then stay 1)
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False
    # the base learning rate: the spec's, or the one calibrated for this cell's LLM (then
    # lr_reference_width is None: a calibrated rate is used as found); workloads.optim.schedule
    # turns it into the rate of every step
    lr: float = 2e-3
    # if set, the peak LR is lr × lr_reference_width / LLM hidden size (μP-style width scaling), so
    # one setting suits every LLM of a grid; None uses lr as is
    lr_reference_width: int | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's (Hugging Face's defaults, as LLaVA trains)
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    eval_every: int = 0  # 0: evaluate only at the end
    log_every: int = 20
    strategy: Strategy = "ddp"
    zero_stage: ZeroStage = 2
    precision: Precision = "fp32"
    seed: int = 0
    threads_per_worker: int = 1
    stages: tuple[StageConfig, ...] = ()  # none: one stage of `steps` training what the model leaves trainable
    # the step's speed levers (workloads/speed.py); each default is the one measured safe everywhere
    attention: Attention = "sdpa"  # the LLM's and tower's attention kernel
    fused_optimizer: bool = False  # AdamW as one fused kernel (not bit-identical to the default's loop)
    compile: Compile = "none"  # blocks: torch.compile each transformer block (regional: short compiles)
    logits: Logits = "all"  # supervised: the LM head only at the positions that carry a label, in chunks

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages) if self.stages else self.steps

    @property
    def total_samples(self) -> int:
        """Training samples the cell sees, every stage counted (a law's D for a VLM cell)."""
        return sum(s.steps * s.batch_size for s in self.stages) if self.stages else self.steps * self.batch_size

    def micro_and_accum(self, world: int) -> tuple[int, int]:
        """(per-device micro-batch, accumulation steps) that make up ``batch_size`` on ``world`` workers."""
        if self.micro_batch_size is not None:
            if self.grad_accum != 1:
                raise ValueError("set train.micro_batch_size or train.grad_accum, not both")
            accum, rest = divmod(self.batch_size, world * self.micro_batch_size)
            if accum < 1 or rest:
                raise ValueError(f"train.batch_size {self.batch_size} must be a multiple of workers ({world}) x "
                                 f"micro_batch_size ({self.micro_batch_size})")
            return self.micro_batch_size, accum
        micro, rest = divmod(self.batch_size, world * self.grad_accum)
        if micro < 1 or rest:
            raise ValueError(f"train.batch_size {self.batch_size} must be a multiple of workers ({world}) x "
                             f"grad_accum ({self.grad_accum})")
        return micro, self.grad_accum


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining of a tiny vision tower on scene-cell recognition (workloads/pretrain_vision.py):
    the embedded default's stand-in for a pretrained CLIP."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    preset: str = "vit-tiny"
    seed: int = 0
    cells: int = 4  # the scene grid it learns to read (the data's cells)

    def name(self) -> str:
        """The tower's directory name: its preset and a hash of every setting, so that towers of
        different settings live side by side and none is ever overwritten by another."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return f"{self.preset}-{hashlib.sha256(blob).hexdigest()[:12]}"


@dataclass(frozen=True)
class ProfileSettings:
    """What ``vlmscale profile`` measures per architecture (workloads/inference_cost.py)."""

    batch_sizes: tuple[int, ...] = (1, 8)  # prompts per forward
    text_tokens: int = 50  # Q: text tokens per prompt besides the visual ones (the spec's fit.text_tokens)
    answer_tokens: int = 8  # decode steps timed per prefill (a short answer)
    repeats: int = 10  # timed prefills per point
    warmup: int = 2
    dtype: ProfileDtype = "auto"  # auto: bfloat16 on a GPU, float32 on a CPU

    def torch_dtype(self, device):
        import torch

        name = self.dtype if self.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
        return getattr(torch, name)


@dataclass(frozen=True)
class FaultConfig:
    """A drill for crash recovery (workloads/drill.py): the cell crashes once, unless it resumed
    from a checkpoint — at its first report after ``step`` (``during: step``), or while writing
    the checkpoint of ``step``, which then lands half-written (``during: checkpoint``)."""

    step: int
    during: DrillMoment = "step"


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark scored on generated answers (workloads/benchmarks.py)."""

    name: str
    questions: str  # JSONL in LLaVA-1.5's evaluation layout
    scorer: ScorerName
    image_root: str | None = None  # default: the questions file's folder
    max_new_tokens: int | None = None  # default: its scorer's reference (ScienceQA, MMBench: 1,024), else the evaluation's
    prompt_suffix: str | None = None  # default: its scorer's (e.g. "\nAnswer the question using a single word or phrase.")


@dataclass(frozen=True)
class EvalConfig:
    benchmarks: tuple[BenchmarkConfig, ...] = ()
    max_new_tokens: int = 128  # LLaVA-1.5's evaluation scripts
    batch_size: int = 16

    def new_tokens(self, b: BenchmarkConfig) -> int:
        return b.max_new_tokens or SCORERS[b.scorer].max_new_tokens or self.max_new_tokens


@dataclass(frozen=True)
class CellConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    fault: FaultConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_files(self) -> tuple[str, ...]:
        """The data files the cell reads (LLaVA records, benchmark questions), each once."""
        d = self.data
        found = [d.llava_train, d.llava_eval] if d.source == "llava" else []
        found += [st.data for st in self.train.stages] + [b.questions for b in self.eval.benchmarks]
        return tuple(dict.fromkeys(str(f) for f in found if f))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellConfig:
        fault = d.get("fault")
        train = dict(d.get("train", {}))
        train["stages"] = tuple(_build(StageConfig, st) for st in train.get("stages", ()))
        evaluation = dict(d.get("eval", {}))
        evaluation["benchmarks"] = tuple(_build(BenchmarkConfig, b) for b in evaluation.get("benchmarks", ()))
        return cls(
            model=_build(ModelConfig, d.get("model", {})),
            data=_build(DataConfig, d.get("data", {})),
            train=_build(TrainConfig, train),
            eval=_build(EvalConfig, evaluation),
            fault=_build(FaultConfig, fault) if fault is not None else None,
        )

    def digest(self) -> str:
        """What the cell's result depends on, hashed: a finished cell counts under a spec only
        while this is unchanged. A fault drill is left out: the drilled cell resumes bit-identically."""
        blob = json.dumps({k: v for k, v in self.to_dict().items() if k != "fault"}, sort_keys=True,
                          default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _build(kind, values: dict[str, Any]):
    names = {f.name: f for f in fields(kind)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} field(s): {', '.join(sorted(unknown))}")
    # tuples arrive as lists after a JSON/YAML round trip
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return kind(**coerced)

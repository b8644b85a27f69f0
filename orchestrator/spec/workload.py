"""What one cell trains on and how: the vision tower, the data, the training loop (and its
learning-rate calibration), and the fault drill.

The defaults are the workload's own (``workloads.config``): one set of defaults, read here.
Each block maps onto the workload's config in one place, ``spec/cells.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator

from workloads.config import (
    AspectRatio,
    Attention,
    BadRecord,
    Compile,
    Conversation,
    DataConfig,
    DrillMoment,
    EvalConfig,
    Logits,
    ModelConfig,
    Part,
    Precision,
    PretrainConfig,
    ScorerName,
    Source,
    Strategy,
    TrainConfig,
    ZeroStage,
)
from workloads.presets import VISION_PRESETS, is_vision_preset, vision_shape

from .base import BATCH_MAX, EVAL_MAX, LR_MAX, SEED_MAX, SIZE_MAX, STEPS_MAX, THREADS_MAX, Strict, model_ref


class VisionPretraining(Strict):
    steps: int = Field(PretrainConfig.steps, ge=1, le=10**6)
    batch_size: int = Field(PretrainConfig.batch_size, ge=1, le=1 << 16)
    lr: float = Field(PretrainConfig.lr, gt=0, le=LR_MAX)


class Vision(Strict):
    model: str = Field(ModelConfig.vision, description="A tiny preset or a Hugging Face CLIP/SigLIP name/path")
    freeze: bool = ModelConfig.freeze_vision
    # presets only: pretrain the tiny tower once per experiment (stand-in for a pretrained CLIP)
    pretrain: VisionPretraining | None = VisionPretraining()
    feature_layer: int = ModelConfig.vision_feature_layer
    kv_layers: list[int] = list(ModelConfig.kv_layers)
    compressor_heads: int = Field(ModelConfig.compressor_heads, ge=1, le=1024)
    patch_grid: int | None = Field(None, ge=1, description="Patch grid side of a hub model (e.g. 24 for ViT-L/14-336)")
    projector_from: str | None = Field(None, description=(
        "Start the projector from saved weights: LLaVA's mm_projector.bin, or a vlmscale checkpoint's model.pt"))
    compressor_from: str | None = Field(None, description="Start the compressor from a vlmscale checkpoint's model.pt")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return model_ref(v, "vision model")

    @field_validator("projector_from", "compressor_from")
    @classmethod
    def _weights(cls, v: str | None) -> str | None:
        return None if v is None else model_ref(v, "weights file")

    @model_validator(mode="after")
    def _pretrain_only_presets(self) -> Vision:
        if self.pretrain is not None and not is_vision_preset(self.model):
            raise ValueError(f"pretrain applies to tiny presets only ({', '.join(VISION_PRESETS)}); "
                             f"set pretrain: null for the pretrained model {self.model!r}")
        return self

    def grid(self, located=None) -> int | None:
        """The patch grid side when known without loading anything: a preset, an explicit
        ``patch_grid``, or a local checkpoint's ``config.json`` (``located``: where the spec's
        model reference points, see spec/artifacts.py; else only an absolute path is read)."""
        from .artifacts import locate, preset_vision, vision_grid

        if is_vision_preset(self.model):
            return vision_shape(self.model).grid
        if self.patch_grid is not None:
            return self.patch_grid
        if located is None and Path(self.model).is_absolute():
            located = locate(self.model, None, preset_vision)
        return vision_grid(located) if located is not None else None


class Data(Strict):
    source: Source = DataConfig.source
    train_size: int = Field(DataConfig.train_size, ge=1, le=SIZE_MAX)
    eval_size: int = Field(DataConfig.eval_size, ge=1, le=EVAL_MAX)
    cells: int = Field(DataConfig.cells, ge=2, le=9)
    questions_per_image: int = Field(DataConfig.questions_per_image, ge=1, le=64)
    llava_train: str | None = Field(None, description="LLaVA-format JSON or JSONL (relative: to the spec file); the "
                                                      "data of stages that name none (default: the last stage's)")
    llava_eval: str | None = Field(None, description="LLaVA-format held-out records (its first eval_size)")
    image_root: str | None = Field(None, description="Folder the records' image paths are relative to")
    tokenizer: str | None = Field(None, description="A tokenizer's directory or hub id (default: the LLM's own)")
    conversation: Conversation = Field(DataConfig.conversation, description=(
        "How turns become tokens: vicuna_v1 = what the study's scripts train and evaluate with; auto = plain "
        "for synthetic data, else the LLM tokenizer's chat template if it has one, else llava_v1"))
    image_aspect_ratio: AspectRatio = Field(DataConfig.image_aspect_ratio, description=(
        "pad: to a square in the image processor's mean colour first (LLaVA-1.5); square: the processor's "
        "own resize and crop"))
    max_length: int = Field(DataConfig.max_length, ge=16, le=1 << 20,
                            description="Tokens of a training sequence (cut after, never inside the image)")
    group_by_length: bool = Field(DataConfig.group_by_length,
                                  description="LLaVA data: batches of similar length (less padding; the data order "
                                              "changes)")
    group_by_modality_length: bool = Field(
        DataConfig.group_by_modality_length,
        description="LLaVA data as LLaVA's trainer groups it: each global batch all image or all text-only "
                    "records, sorted by length and dealt evenly to the micro-batches")

    on_bad_record: BadRecord = Field(DataConfig.on_bad_record, description=(
        "LLaVA data: a bad record (a malformed conversation, an image missing or that cannot be decoded) ends the "
        "cell naming its file and line (fail), or is left out and counted in the cell's data/skipped_records (skip)"))

    @model_validator(mode="after")
    def _one_grouping(self) -> Data:
        if self.group_by_length and self.group_by_modality_length:
            raise ValueError("group_by_length or group_by_modality_length, not both")
        return self


class Benchmark(Strict):
    """A benchmark scored on generated answers: LLaVA-1.5's evaluation layout, one scorer."""

    name: str = Field(description="Its metric is error/<name>: lowercase letters, digits, '_', '-', '.'")
    questions: str = Field(description="JSONL: question_id, image, text, answer or answers (options for choices)")
    scorer: ScorerName = Field(description="How an answer is scored (see docs/reference.md)")
    image_root: str | None = Field(None, description="Folder the questions' images are relative to "
                                                     "(default: the questions file's)")
    max_new_tokens: int | None = Field(None, ge=1, le=4096, description=(
        "Longest generated answer (default: its scorer's reference — 1,024 for ScienceQA and MMBench, as LLaVA's "
        "scripts — else evaluation.max_new_tokens)"))
    prompt_suffix: str | None = Field(None, max_length=1000, description=(
        "Appended to each question (default: its scorer's, e.g. \"\\nAnswer the question using a single word or "
        "phrase.\"; \"\" for none); a question that already ends with it is left as it is"))

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"^[a-z0-9][a-z0-9_.\-]{0,62}$", v):
            raise ValueError(f"{v!r}: a benchmark name is lowercase letters, digits, '_', '-' and '.' (at most 63)")
        return v

    @field_validator("questions", "image_root")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else model_ref(v, "benchmark file")


class Evaluation(Strict):
    """The study's evaluation: the cell's error is the mean over these benchmarks' errors; a group's
    error is the mean over its own (the paper's error is its nine reasoning benchmarks')."""

    benchmarks: list[Benchmark] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict, description=(
        "Named sets of benchmarks, each with its error error/<group> (the mean of its members'), e.g. "
        "{reasoning: [mme, gqa, ...], ocr: [textvqa]}: a fit's metric may be one"))
    max_new_tokens: int = Field(EvalConfig.max_new_tokens, ge=1, le=4096,
                                description="Longest generated answer (LLaVA-1.5's evaluation: 128)")
    batch_size: int = Field(EvalConfig.batch_size, ge=1, le=4096, description="Questions generated at once per worker")

    @field_validator("benchmarks")
    @classmethod
    def _unique(cls, v: list[Benchmark]) -> list[Benchmark]:
        names = [b.name for b in v]
        if len(set(names)) != len(names):
            raise ValueError("names a benchmark twice")
        return v

    @model_validator(mode="after")
    def _groups(self) -> Evaluation:
        names = {b.name for b in self.benchmarks}
        for group, members in self.groups.items():
            if not re.fullmatch(r"^[a-z0-9][a-z0-9_.\-]{0,62}$", group):
                raise ValueError(f"groups: {group!r}: a group name is lowercase letters, digits, '_', '-' and '.'")
            if group in names:
                raise ValueError(f"groups: {group!r} is also a benchmark's name; error/{group} would mean both")
            unknown = [m for m in members if m not in names]
            if not members or unknown:
                raise ValueError(f"groups.{group}: " + (f"{unknown[0]!r} is not a benchmark of spec.evaluation"
                                                         if unknown else "lists no benchmark"))
            if len(set(members)) != len(members):
                raise ValueError(f"groups.{group}: lists a benchmark twice")
        return self


class LRCalibration(Strict):
    """Search the learning rate per LLM size before the grid (Ray Tune, Optuna TPE, ASHA)."""

    low: float = Field(gt=0, le=LR_MAX, description="Smallest learning rate tried")
    high: float = Field(gt=0, le=LR_MAX, description="Largest learning rate tried")
    log: bool = Field(True, description="Sample on a log scale")
    trials: int = Field(6, ge=2, le=1000, description="Trials per LLM size")
    steps: int | None = Field(None, ge=1, le=STEPS_MAX, description="Steps of a trial (default: a third of training.steps)")
    visual_tokens: int | None = Field(None, ge=1, description="V to calibrate at (default: the grid's smallest)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the TPE sampler (and of the trials' data)")
    concurrent_trials: int = Field(
        1, ge=1, le=1000, description="Trials at once per size; 1 keeps the search deterministic for a seed (with more, "
                             "TPE and ASHA decide on whichever trial reports first)")

    @model_validator(mode="after")
    def _range(self) -> LRCalibration:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high:g}) must be larger than low ({self.low:g})")
        return self

    def trial_steps(self, training_steps: int) -> int:
        return self.steps or max(1, training_steps // 3)

    @property
    def middle(self) -> float:
        """What a cell shows before its size is calibrated: the geometric middle of the range."""
        return (self.low * self.high) ** 0.5


T = TrainConfig  # the defaults


class Stage(Strict):
    """A phase of every cell's training; unset fields take training's."""

    name: str = Field(description="Lowercase letters, digits, '_' and '-'")
    trainable: list[Part] = Field(min_length=1, description="The parts this stage trains; the others stay frozen")
    data: str | None = Field(None, description="A LLaVA-format file (default: data.llava_train)")
    steps: int | None = Field(None, ge=1, le=STEPS_MAX, description="Default: training.steps")
    lr: float | None = Field(None, gt=0, le=LR_MAX, description="Default: training.lr")
    batch_size: int | None = Field(None, ge=1, le=BATCH_MAX, description="Global batch (default: training.batch_size)")
    image_aspect_ratio: AspectRatio | None = Field(None, description=(
        "This stage's images (default: data.image_aspect_ratio); LLaVA-1.5: square in stage 1, pad in stage 2. "
        "Evaluation reads images as the last stage does"))

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"^[a-z0-9][a-z0-9_\-]{0,62}$", v):
            raise ValueError(f"{v!r}: a stage name is lowercase letters, digits, '_' and '-' (at most 63)")
        return v

    @field_validator("trainable")
    @classmethod
    def _parts(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a part twice")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: str | None) -> str | None:
        return None if v is None else model_ref(v, "stage data file")


class Training(Strict):
    steps: int = Field(T.steps, ge=1, le=STEPS_MAX)
    batch_size: int = Field(T.batch_size, ge=1, le=BATCH_MAX,
                            description="Global batch: the same for every cell, whatever the workers")
    grad_accum: int = Field(T.grad_accum, ge=1, le=1 << 16)
    micro_batch_size: int | None = Field(
        T.micro_batch_size, ge=1, le=BATCH_MAX, description="Per-device micro-batch; accumulation steps = batch_size / (workers x this)")
    gradient_checkpointing: bool = Field(T.gradient_checkpointing,
                                         description="Recompute activations in backward (saves memory)")
    lr: float | LRCalibration = Field(
        T.lr, description="A learning rate (> 0), or a calibration block: the best per LLM size is searched first")
    lr_reference_width: int | None = Field(T.lr_reference_width, ge=1, le=1 << 20,
                                           description="Scale lr by this / the LLM's hidden size")
    weight_decay: float = Field(T.weight_decay, ge=0, le=100)
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = Field(list(T.betas), min_length=2, max_length=2, description=(
        "AdamW's (beta1, beta2); Hugging Face's defaults, as LLaVA trains"))
    warmup_ratio: float = Field(T.warmup_ratio, ge=0, le=1)
    min_lr_ratio: float = Field(T.min_lr_ratio, ge=0, le=1)
    grad_clip: float = Field(T.grad_clip, gt=0, le=1e6)
    checkpoint_every: int = Field(T.checkpoint_every, ge=1, le=STEPS_MAX)
    eval_every: int = Field(T.eval_every, ge=0, le=STEPS_MAX)
    log_every: int = Field(T.log_every, ge=1, le=STEPS_MAX)
    strategy: Strategy = Field(T.strategy, description="ddp: replicas; fsdp: FSDP2, parameters, gradients and "
                                                        "optimizer state sharded by transformer block; deepspeed: ZeRO")
    zero_stage: ZeroStage = T.zero_stage
    precision: Precision = Field(T.precision,
                                               description="bf16: mixed precision (DDP autocast, DeepSpeed bf16)")
    attention: Attention = Field(T.attention, description="The attention kernel: sdpa, eager, flash_attention_2 "
                                                          "(needs flash-attn and a GPU)")
    fused_optimizer: bool = Field(T.fused_optimizer, description="AdamW as one fused kernel per step")
    compile: Compile = Field(T.compile, description="blocks: torch.compile each transformer block (regional)")
    logits: Logits = Field(T.logits, description="supervised: the LM head only at labelled positions, in chunks "
                                                 "recomputed in backward (the vocabulary's logits are the largest "
                                                 "activation)")
    threads_per_worker: int | None = Field(
        None, ge=1, le=THREADS_MAX, description="Intra-op threads of each worker; default: resources.cpus_per_worker (at least 1)")
    stages: list[Stage] = Field(default_factory=list, description=(
        "Phases of every cell (e.g. the projector on captions with the LLM frozen, then everything on "
        "instructions), each from the last one's weights; none: one stage of `steps` on data.llava_train"))

    @property
    def total_steps(self) -> int:
        return sum(st.steps or self.steps for st in self.stages) if self.stages else self.steps

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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= LR_MAX:
            raise ValueError(f"give a learning rate in (0, {LR_MAX:g}] or a calibration block (low, high, ...), "
                             f"got {v!r}")
        return float(v)

    @property
    def calibration(self) -> LRCalibration | None:
        return self.lr if isinstance(self.lr, LRCalibration) else None

    @model_validator(mode="after")
    def _one_batch_split(self) -> Training:
        if self.micro_batch_size is not None and self.grad_accum != 1:
            raise ValueError("set micro_batch_size or grad_accum, not both: with micro_batch_size the "
                             "accumulation steps follow from batch_size and the number of workers")
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stages: names a stage twice")
        if self.stages and self.calibration is not None:
            raise ValueError("stages: give each stage its lr; a calibration block searches one rate for one stage")
        if self.stages and self.strategy == "deepspeed" and self.zero_stage == 3:
            raise ValueError("stages with DeepSpeed ZeRO-3: a stage re-creates the engine over the same module, "
                             "which ZeRO-3 has partitioned; use zero_stage 1 or 2 (or one stage)")
        return self


class FaultInjection(Strict):
    """Crash the named cells once at a step (a drill for crash recovery)."""

    cells: list[str]
    step: int = Field(ge=1, le=STEPS_MAX)
    during: DrillMoment = Field(
        "step", description="checkpoint: crash while writing that step's checkpoint, leaving it half-written")

"""What the study does with its cells: the fit (law, loss, intervals, proposals), finished cells
imported from elsewhere, rounds of proposed cells, and the inference profile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator, model_validator

from workloads import compressors
from workloads.config import ProfileDtype, ProfileSettings

from ..scaling.fit import LOSSES
from ..scaling.forms import FORMS, METRIC_KINDS
from .base import BOOTSTRAP_MAX, GPUS_MAX, RFC1123_LABEL, THREADS_MAX, TOKENS_MAX, V_MAX, Strict, model_ref, one_of
from .sizes import COUNTINGS
from .sizes import DEFAULT as DEFAULT_COUNTING

# a registry's names: a Literal of them at run time (pydantic, the schema), str to a type checker
if TYPE_CHECKING:
    LawFormName = str
    LossName = str
    MetricKind = str
    CountingName = str
    CompressorName = str
else:
    LawFormName = one_of(FORMS)
    LossName = one_of(LOSSES)
    MetricKind = one_of(METRIC_KINDS)
    CountingName = one_of(COUNTINGS)
    CompressorName = one_of(compressors.names())


class Candidates(Strict):
    """The cells proposals choose from: these LLMs × these visual-token counts × the grid's
    compressors, less every cell the study already has."""

    llms: list[str] | None = Field(
        None, max_length=64, description="LLM presets or Hugging Face names/paths proposals may train "
                                         "(default: the grid's LLMs)")
    visual_tokens: list[Annotated[int, Field(ge=1, le=V_MAX)]] | None = Field(
        None, max_length=1024, description="Visual-token counts proposals may use (default: every V each compressor "
                                           "produces on whole blocks of the tower's patch grid, none straddling "
                                           "a patch)")

    @field_validator("llms")
    @classmethod
    def _llms(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            model_ref(name, "LLM")
        if v is not None and len(set(v)) != len(v):
            raise ValueError("lists an LLM twice")
        return v

    @field_validator("visual_tokens")
    @classmethod
    def _unique(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("lists a value twice")
        return v


class LawSpec(Strict):
    """A law written as an expression over named inputs and parameters (scaling/expression.py)."""

    expression: str = Field(description="e.g. 'E + A / N**alpha + B / D**beta': numbers, names, + - * / **, "
                                        "exp, log, sqrt, min, max")
    params: dict[str, Any] = Field(description="each parameter's range: [low, high], {log_range: [low, high]} "
                                               "or {bounds: [...], start: [...]}")
    floor: str | None = Field(None, description="the parameter kept below the smallest observed value")
    name: str | None = None
    per_group: list[str] | None = Field(None, description="parameters that take a value per fit.group")

    @model_validator(mode="after")
    def _compiles(self) -> LawSpec:
        from ..scaling.expression import law_from_doc

        law_from_doc(self.model_dump(exclude_none=True), "law")  # every problem, one line, at validate
        return self


class Fit(Strict):
    """How the law is fitted and used. These defaults are the only ones: ``fit``, ``propose``,
    ``report`` and ``frontier`` fall back to them for a table too (their --help shows them)."""

    enabled: bool = True
    form: LawFormName = Field("multiplicative", description="The law's form")
    loss: LossName = Field("squared", description="The fitting objective")
    metric: str = Field("error", description="The cell metric to fit, e.g. error, eval_loss, error/shapes")
    metric_kind: MetricKind | None = Field(
        None, description="error: a rate in (0, 1); loss: any positive value, fitted raw (e.g. nats). "
                          "Default: loss when the metric's name contains 'loss', else error")
    parameters: CountingName = Field(DEFAULT_COUNTING, description=(
        "What N counts: non_embedding or total (measured by each cell), or nominal (the size in the model's name, "
        "or fit.nominal_sizes: what the paper fits)"))
    nominal_sizes: dict[str, Annotated[float, Field(gt=0, le=1e15)]] | None = Field(
        None, max_length=1024, description="With parameters: nominal, an LLM's size in parameters where its name "
                                           "states none, e.g. {my-org/llm-a: 5.0e8}")
    compressors: list[CompressorName] | None = Field(
        None, min_length=1, description="The cells the law is fitted on and proposals extend: these compressors' "
                                        "(default: every compressor of the grid); a fit split by compressor "
                                        "(--group compressor) fits each")
    text_tokens: float = Field(
        50.0, ge=0, le=TOKENS_MAX,
        description="Q, the text tokens of a prompt besides the visual ones, in every inference cost: the LLM's "
                    "2·N·(Q + V), the whole VLM's, the frontier, `vlmscale profile` (the study's 50; 0: cached text)")
    bootstrap: int = Field(1000, ge=0, le=BOOTSTRAP_MAX, description="Bootstrap replicates behind every interval")
    ci_level: float = Field(0.9, gt=0, lt=1, description="Coverage of the bootstrap intervals")
    cross_validate: bool = Field(True, description="Leave-one-out and largest-LLM hold-out errors")
    propose: int = Field(4, ge=0, le=10_000, description="Cells proposed after each fit (next.yaml)")
    budget: str | None = Field(
        None, pattern=r"^\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(gpuh)?\s*$", max_length=40,
        description="A cap on the training cost of each fit's proposals: FLOPs (e.g. 1e21) or GPU hours on "
                    "spec.price's accelerator at its MFU (e.g. 200gpuh); `propose --budget` overrides it")
    candidates: Candidates = Field(Candidates(), description="What proposals choose from")
    law: LawSpec | None = Field(None, description="A law written as an expression, instead of form")
    group: str | None = Field(None, description="A cell column (compressor, task, seed, ...) that splits the fit: "
                                                "a law per value, or with per_group one joint law")
    per_group: list[str] | None = Field(None, description="Parameters that take a value per group (others shared)")
    at: dict[str, float] | None = Field(None, description="Values of a law's inputs other than N and V, for the "
                                                          "frontier, e.g. {train_samples: 1e6}")

    @model_validator(mode="after")
    def _form_or_law(self) -> Fit:
        if self.law is not None and "form" in self.model_fields_set:
            raise ValueError("give form (a built-in law) or law (an expression), not both")
        return self


FIT_DEFAULTS = {name: Fit.model_fields[name].default for name in
                ("form", "loss", "metric", "metric_kind", "parameters", "text_tokens", "bootstrap", "ci_level",
                 "cross_validate")}


class Import(Strict):
    """Finished cells to count without training them: another experiment's, or a results CSV's."""

    experiment: str | None = Field(None, description="Name of a finished experiment to import cells from")
    storage: str | None = Field(None, description="Where that experiment lives (default: this one's storage)")
    results: str | None = Field(None, description="A CSV written by `vlmscale results NAME --format csv` "
                                                  "(relative paths: from the working directory)")

    @model_validator(mode="after")
    def _one_source(self) -> Import:
        if (self.experiment is None) == (self.results is None):
            raise ValueError("give either experiment (with optional storage) or results, not both and not neither")
        if self.experiment is not None and (len(self.experiment) > 63 or not RFC1123_LABEL.fullmatch(self.experiment)):
            raise ValueError(f"{self.experiment!r} is not an experiment name (an RFC 1123 label)")
        if self.results is not None and self.storage is not None:
            raise ValueError("storage applies to an imported experiment, not to a results CSV")
        return self


class Rounds(Strict):
    """A study in rounds: the grid, then each round the cells the fitted law most wants next."""

    count: int = Field(1, ge=1, le=1000, description="Rounds in all; 1 runs the grid only")
    cells_per_round: int | None = Field(None, ge=1, le=10_000, description="Cells proposed per round (default: fit.propose)")
    stop_v_star_ci_width: float | None = Field(
        None, gt=0, description="Stop early once the frontier's V* interval is narrower than this (in tokens)")


P = ProfileSettings  # the defaults


class Profile(Strict):
    """The ``spec.profile`` block: what `vlmscale profile` measures, and where."""

    batch_sizes: list[int] = Field(list(P.batch_sizes), min_length=1, max_length=64,
                                   description="Batch sizes served (prompts per forward)")
    answer_tokens: int = Field(P.answer_tokens, ge=1, le=10**5, description="Decode steps timed per prefill (a short answer)")
    repeats: int = Field(P.repeats, ge=3, le=10**4, description="Timed prefills per point (median and 10th/90th percentiles)")
    warmup: int = Field(P.warmup, ge=0, le=10**4)
    llms: list[str] = Field(default_factory=list, description="LLMs to profile besides the grid's (wider frontier)")
    dtype: ProfileDtype = Field(P.dtype, description="auto: bfloat16 on a GPU, float32 on a CPU")
    cpus: float = Field(1.0, gt=0, le=THREADS_MAX, description="CPUs per profiling task (and its torch threads)")
    gpus: float = Field(0.0, ge=0, le=GPUS_MAX, description="GPUs per profiling task (1 on a GPU cluster)")
    accelerator_type: str | None = Field(None, description="Ray accelerator type to profile on, e.g. H100 or A10G")
    max_concurrent: int | None = Field(None, ge=1, description="Points measured at once (default: 1 on CPUs)")

    @model_validator(mode="before")
    @classmethod
    def _one_q(cls, data):
        if isinstance(data, dict) and "text_tokens" in data:
            raise ValueError("text_tokens: Q is one setting, spec.fit.text_tokens: the profile, the fit and every "
                             "FLOPs figure use it; move the value there")
        return data

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 1 << 16 for b in v):
            raise ValueError("batch sizes must lie in [1, 65536]")
        return sorted(set(v))

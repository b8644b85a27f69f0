"""What the study does with its cells: the fit (law, loss, intervals, proposals), finished cells
imported from elsewhere, rounds of proposed cells, and the inference profile."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from workloads.config import ProfileSettings, ProfileDtype

from ..scaling.fit import LOSSES
from ..scaling.forms import FORMS, METRIC_KINDS
from .base import BOOTSTRAP_MAX, GPUS_MAX, RFC1123_LABEL, THREADS_MAX, TOKENS_MAX, Strict, one_of

LawFormName = one_of(FORMS)
LossName = one_of(LOSSES)
MetricKind = one_of(METRIC_KINDS)


class Fit(Strict):
    enabled: bool = True
    form: LawFormName = "multiplicative"
    loss: LossName = "squared"
    metric: str = Field("error", description="The cell metric to fit, e.g. error, eval_loss, error/shapes")
    metric_kind: MetricKind | None = Field(
        None, description="error: a rate in (0, 1); loss: any positive value, fitted raw (e.g. nats). "
                          "Default: loss when the metric's name contains 'loss', else error")
    text_tokens: float = Field(0.0, ge=0, le=TOKENS_MAX)
    bootstrap: int = Field(200, ge=0, le=BOOTSTRAP_MAX)
    ci_level: float = Field(0.9, gt=0, lt=1, description="Coverage of the bootstrap intervals")
    cross_validate: bool = Field(True, description="Leave-one-out and largest-LLM hold-out errors")
    propose: int = Field(4, ge=0, le=10_000)


class Import(Strict):
    """Finished cells to count without training them: another experiment's, or a results CSV's."""

    experiment: str | None = Field(None, description="Name of a finished experiment to import cells from")
    storage: str | None = Field(None, description="Where that experiment lives (default: this one's storage)")
    results: str | None = Field(None, description="A CSV written by `vlmscale results NAME --format csv` "
                                                  "(relative paths: from the working directory)")

    @model_validator(mode="after")
    def _one_source(self) -> "Import":
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
    text_tokens: int = Field(P.text_tokens, ge=1, le=TOKENS_MAX, description="Text tokens per prompt besides the visual ones (Q)")
    answer_tokens: int = Field(P.answer_tokens, ge=1, le=10**5, description="Decode steps timed per prefill (a short answer)")
    repeats: int = Field(P.repeats, ge=3, le=10**4, description="Timed prefills per point (median and 10th/90th percentiles)")
    warmup: int = Field(P.warmup, ge=0, le=10**4)
    llms: list[str] = Field(default_factory=list, description="LLMs to profile besides the grid's (wider frontier)")
    dtype: ProfileDtype = Field(P.dtype, description="auto: bfloat16 on a GPU, float32 on a CPU")
    cpus: float = Field(1.0, gt=0, le=THREADS_MAX, description="CPUs per profiling task (and its torch threads)")
    gpus: float = Field(0.0, ge=0, le=GPUS_MAX, description="GPUs per profiling task (1 on a GPU cluster)")
    accelerator_type: str | None = Field(None, description="Ray accelerator type to profile on, e.g. H100 or A10G")
    max_concurrent: int | None = Field(None, ge=1, description="Points measured at once (default: 1 on CPUs)")

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 1 << 16 for b in v):
            raise ValueError("batch sizes must lie in [1, 65536]")
        return sorted(set(v))

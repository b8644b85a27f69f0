"""The experiment's identity and its grid: LLMs × visual tokens × compressors × tasks × seeds, or
explicit points."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator, model_validator

from workloads import compressors

from .base import LABEL_KEY, LABEL_VALUE, RFC1123_LABEL, SEED_MAX, V_MAX, Strict, model_ref, one_of

# a registry's names: a Literal of them at run time (pydantic, the schema), str to a type checker
if TYPE_CHECKING:
    CompressorName = str
else:
    CompressorName = one_of(compressors.names())


class Metadata(Strict):
    name: str = Field(description="Experiment name: an RFC 1123 label (lowercase letters, digits, '-'; max 63)")
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels added to every object")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY.fullmatch(key) or len(key.split("/")[-1]) > 63:
                raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
            if not LABEL_VALUE.fullmatch(str(value)):
                raise ValueError(f"label {key}: {value!r} is not a valid Kubernetes label value "
                                 "(at most 63 letters, digits, '-', '_', '.')")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 63 or not RFC1123_LABEL.fullmatch(v):
            raise ValueError(
                f"{v!r} is not an RFC 1123 label: use at most 63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v


class GridPoint(Strict):
    llm: str
    visual_tokens: int = Field(ge=1, le=V_MAX)
    compressor: CompressorName | None = None  # default: compressors[0]
    task: str | None = None  # default: tasks[0]
    seed: int | None = Field(None, ge=0, le=SEED_MAX)  # default: seeds[0]
    round: int | None = Field(None, ge=1, le=1000, description="The study round that proposed it (next.yaml "
                                                               "writes it; not part of the cell)")

    @field_validator("llm")
    @classmethod
    def _llm(cls, v: str) -> str:
        return model_ref(v, "LLM")


class Grid(Strict):
    """The axes ``llms`` × ``visual_tokens`` (× compressors × tasks × seeds), explicit ``points``, or
    both: the product, then the points (e.g. a second compressor at a few V beside the law's grid)."""

    llms: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="LLM presets or Hugging Face names/paths")
    visual_tokens: Annotated[list[Annotated[int, Field(ge=1, le=V_MAX)]], Field(min_length=1)] | None = None
    compressors: Annotated[list[CompressorName], Field(min_length=1)] = ["quecc"]
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=SEED_MAX)]], Field(min_length=1)] = [0]
    tasks: Annotated[list[str], Field(min_length=1)] = ["shapes"]
    points: Annotated[list[GridPoint], Field(min_length=1)] | None = Field(
        None, description="Explicit cells, instead of the llms x visual_tokens product or beside it")

    @field_validator("llms")
    @classmethod
    def _llms(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            model_ref(name, "LLM")
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
    def _axes_or_points(self) -> Grid:
        axes = [f for f in ("llms", "visual_tokens") if getattr(self, f) is not None]
        if len(axes) == 1:
            missing = "visual_tokens" if axes == ["llms"] else "llms"
            raise ValueError(f"{missing} is required (or list explicit points)")
        if not axes and self.points is None:
            raise ValueError("llms is required (or list explicit points)")
        self.combinations()  # a cell listed twice: refused here, with the spec's other errors
        return self

    def _product(self) -> list[tuple[str, int, str, str, int]]:
        if self.llms is None or self.visual_tokens is None:
            return []
        return list(itertools.product(self.llms, self.visual_tokens, self.compressors, self.tasks, self.seeds))

    def rounds(self) -> list[int]:
        """The study round of each cell of :meth:`combinations`: 1, or the round that proposed it."""
        return [1] * len(self._product()) + [p.round or 1 for p in self.points or []]

    def combinations(self) -> list[tuple[str, int, str, str, int]]:
        """(llm, V, compressor, task, seed) of every cell, in a stable order: the axes' product, then
        the points."""
        points = [(p.llm, p.visual_tokens, p.compressor or self.compressors[0], p.task or self.tasks[0],
                   self.seeds[0] if p.seed is None else p.seed) for p in self.points or []]
        out = self._product() + points
        if len(set(out)) != len(out):
            raise ValueError("points lists a cell twice (or one the axes already give)")
        return out

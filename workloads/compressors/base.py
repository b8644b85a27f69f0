"""What every visual-token compressor declares: its name, which V it can produce on a patch grid
(and why not, for any other V), its analytic FLOPs, and how it builds and runs its layers.

Pure at import (no torch): the experiment spec validates every grid point against these rules
before anything is scheduled, and the built module (:mod:`.module`) enforces the same rules, so
the two can never disagree. A compressor is one file in this package defining one
:class:`CompressorKind` subclass decorated with :func:`register`; the package finds it, and the
spec's allowed values, its JSON Schema and the reference docs follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar


class VisualTokenError(ValueError):
    """A compressor cannot produce the requested number of visual tokens."""


@dataclass(frozen=True)
class Shape:
    """What a compressor is built for: V tokens out of a ``grid``×``grid`` patch grid of width
    ``dim``; ``llm_dim`` is the LLM's width (question embeddings), ``heads`` the attention heads,
    ``num_layers`` the encoder layers a multi-layer compressor reads."""

    visual_tokens: int
    grid: int
    dim: int
    llm_dim: int
    heads: int
    num_layers: int


def square_side(v: int) -> int | None:
    side = math.isqrt(v)
    return side if side * side == v else None


def listed(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def square_refusal(name: str, v: int, grid: int, feasible: list[int]) -> str | None:
    """Why V is not a square grid of at most g×g tokens (pooling compressors), or None."""
    if square_side(v) is None:
        return (f"compressor {name!r} produces a square grid of tokens, so visual_tokens must be a perfect "
                f"square (got {v}); valid: {listed(feasible)}")
    if math.isqrt(v) > grid:
        return (f"compressor {name!r} cannot produce {v} tokens from a {grid}x{grid} patch grid "
                f"(at most {grid * grid}); valid: {listed(feasible)}")
    return None


def either(words: list[str]) -> str:
    """``a, b or c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# LLaVA-1.5's mm_projector.bin: the 2-layer MLP as Sequential indices 0 and 2 (GELU between)
LLAVA_MLP = (("0.", "projector.net.0."), ("2.", "projector.net.2."))


class CompressorKind:
    """One compressor: patch features [B, P, D] on a g×g grid → exactly V tokens [B, V, D]."""

    name: ClassVar[str]
    order: ClassVar[int]  # place in listings (spec schema, docs)
    summary: ClassVar[str]  # one line for the docs
    needs_query: ClassVar[bool] = False  # reads the LLM's embedding of the question
    reads_layers: ClassVar[bool] = False  # reads the encoder's ``kv_layers`` besides the features
    # What its reference saves as ``mm_projector.bin`` (the keys under ``model.mm_projector.``):
    # (the reference's key prefix, the VLM's) pairs; the parts the pairs reach are what such a file
    # must hold, every key of them (workloads/weights.py). Parameter-free compressors: LLaVA's MLP.
    reference_layout: ClassVar[tuple[tuple[str, str], ...]] = LLAVA_MLP
    # Raised when what the compressor computes changes: a cell's identity carries it (above 1), so a
    # result of the old computation never counts as one of the new
    revision: ClassVar[int] = 1

    def feasible(self, grid: int, limit: int | None = None) -> list[int]:
        """Every V it can produce on a ``grid``×``grid`` patch grid (unbounded ones: up to ``limit``)."""
        raise NotImplementedError

    def refusal(self, v: int, grid: int) -> str | None:
        """Why V is impossible on this grid (naming the valid values), or None."""
        raise NotImplementedError

    def aligned(self, grid: int) -> list[int]:
        """The V it produces on whole k×k blocks of a ``grid``×``grid`` patch grid (√V divides the
        grid), so no token straddles a patch boundary: what proposals choose from by default. A
        4×4 grid pooled to 3×3 mixes every patch into several tokens (V = 9 measured worse than 4)."""
        return [v for v in self.feasible(grid, grid * grid) if (side := square_side(v)) is not None and grid % side == 0]

    def init(self, module: Any, shape: Shape) -> None:
        """Create the layers on ``module`` (an ``nn.Module``); torch is imported here, not at import."""

    def init_projector(self, projector: Any) -> None:
        """Initialise the MLP projector that follows it, where its reference initialises it its own way."""

    def parameter_shapes(self, shape: Shape) -> dict[str, tuple[int, ...]]:
        """Every parameter ``init`` creates, by its name in the module's ``state_dict``, with its shape:
        what a weights file must hold, known without torch (a test holds it equal to the module's)."""
        return {}

    def forward(self, module: Any, x: Any) -> Any:
        """``x``: :class:`.module.CompressorInputs` → [B, V, D]."""
        raise NotImplementedError

    def flops(self, shape: Shape) -> int:
        """Analytic forward FLOPs per image (multiply-add = 2) beyond parameter-free reshapes."""
        return 0


class RegionKind(CompressorKind):
    """A compressor whose V queries each own a k×k block of the g×g patch grid (k = g/√V divides g)."""

    def feasible(self, grid, limit=None):
        return [(grid // k) ** 2 for k in range(grid, 0, -1) if grid % k == 0]

    def refusal(self, v, grid):
        why = square_refusal(self.name, v, grid, self.feasible(grid))
        if why is None and grid % math.isqrt(v) != 0:
            why = (f"compressor '{self.name}' gives each of its V queries its own k×k block of the {grid}x{grid} "
                   f"patch grid, so sqrt(visual_tokens) must divide {grid} (got {v}); "
                   f"valid: {listed(self.feasible(grid))}")
        return why


# ---- parameter shapes without torch (what nn.Linear, nn.LayerNorm and the attention hold)


def linear(prefix: str, d_in: int, d_out: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}weight": (d_out, d_in), **({f"{prefix}bias": (d_out,)} if bias else {})}


def layer_norm(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}weight": (d,), f"{prefix}bias": (d,)}


def mlp_shapes(prefix: str, d_in: int, d_out: int, norm: bool = True) -> dict[str, tuple[int, ...]]:
    """Linear–GELU–Linear(–LayerNorm) as an ``nn.Sequential``: indices 0, 2 (and 3)."""
    return {**linear(f"{prefix}0.", d_in, d_out), **linear(f"{prefix}2.", d_out, d_out),
            **(layer_norm(f"{prefix}3.", d_out) if norm else {})}


def attention_shapes(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
    """``nn.MultiheadAttention(d, heads)`` with queries, keys and values all of width d."""
    return {f"{prefix}in_proj_weight": (3 * d, d), f"{prefix}in_proj_bias": (3 * d,),
            **linear(f"{prefix}out_proj.", d, d)}


REGISTRY: dict[str, CompressorKind] = {}


def names() -> tuple[str, ...]:
    """The registered compressors, in their listing order."""
    return tuple(sorted(REGISTRY, key=lambda n: (REGISTRY[n].order, n)))


def register(cls: type[CompressorKind]) -> type[CompressorKind]:
    if cls.name in REGISTRY:
        raise ValueError(f"compressor {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls

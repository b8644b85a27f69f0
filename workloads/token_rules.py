"""Which visual-token counts each compressor can produce, for a given patch grid.

Pure Python (no torch): the experiment spec validates a whole grid with these rules before
anything is scheduled, and the torch modules in :mod:`workloads.compressors` call the same rules
when they are built, so the two can never disagree.
"""

from __future__ import annotations

import math

COMPRESSOR_NAMES: tuple[str, ...] = ("none", "avgpool", "resampler", "quecc")


class VisualTokenError(ValueError):
    """A compressor cannot produce the requested number of visual tokens."""


def _square_side(v: int) -> int | None:
    side = math.isqrt(v)
    return side if side * side == v else None


def feasible_visual_tokens(compressor: str, grid: int, limit: int | None = None) -> list[int]:
    """All V the compressor can produce on a ``grid``×``grid`` patch grid (resampler: up to ``limit``)."""
    if compressor == "none":
        return [grid * grid]
    if compressor == "avgpool":
        return [s * s for s in range(1, grid + 1)]
    if compressor == "quecc":
        return [(grid // k) ** 2 for k in range(grid, 0, -1) if grid % k == 0]
    if compressor == "resampler":
        return list(range(1, (limit or grid * grid) + 1))
    raise VisualTokenError(f"unknown compressor {compressor!r}; choose one of {', '.join(COMPRESSOR_NAMES)}")


def check_visual_tokens(compressor: str, visual_tokens: int, grid: int) -> None:
    """Raise :class:`VisualTokenError` with the reason and the valid choices if V is impossible."""
    if compressor not in COMPRESSOR_NAMES:
        raise VisualTokenError(
            f"unknown compressor {compressor!r}; choose one of {', '.join(COMPRESSOR_NAMES)}"
        )
    v = visual_tokens
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise VisualTokenError(f"visual_tokens must be a positive integer, got {v!r}")
    patches = grid * grid
    if compressor == "none":
        if v != patches:
            raise VisualTokenError(
                f"compressor 'none' keeps all {patches} patch tokens of the {grid}x{grid} grid, "
                f"so visual_tokens must be {patches} (got {v}); use avgpool, resampler or quecc to compress"
            )
        return
    if compressor == "resampler":
        return
    side = _square_side(v)
    if side is None:
        raise VisualTokenError(
            f"compressor {compressor!r} produces a square grid of tokens, so visual_tokens must be a "
            f"perfect square (got {v}); valid: {_fmt(feasible_visual_tokens(compressor, grid))}"
        )
    if side > grid:
        raise VisualTokenError(
            f"compressor {compressor!r} cannot produce {v} tokens from a {grid}x{grid} patch grid "
            f"(at most {patches}); valid: {_fmt(feasible_visual_tokens(compressor, grid))}"
        )
    if compressor == "quecc" and grid % side != 0:
        raise VisualTokenError(
            f"compressor 'quecc' downsamples the {grid}x{grid} patch grid with kernel = stride = k, so "
            f"sqrt(visual_tokens) must divide {grid} (got {v}); valid: {_fmt(feasible_visual_tokens('quecc', grid))}"
        )


def _fmt(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)

"""``avgpool``: adaptive 2-D average pooling of the g×g patch grid to √V×√V."""

from __future__ import annotations

import math

from .base import CompressorKind, listed, register, square_side


def square_refusal(name: str, v: int, grid: int, feasible: list[int]) -> str | None:
    """Why V is not a square grid of at most g×g tokens (pooling compressors), or None."""
    if square_side(v) is None:
        return (f"compressor {name!r} produces a square grid of tokens, so visual_tokens must be a perfect "
                f"square (got {v}); valid: {listed(feasible)}")
    if math.isqrt(v) > grid:
        return (f"compressor {name!r} cannot produce {v} tokens from a {grid}x{grid} patch grid "
                f"(at most {grid * grid}); valid: {listed(feasible)}")
    return None


@register
class AvgPool(CompressorKind):
    name = "avgpool"
    order = 1
    summary = "adaptive average pooling of the patch grid to √V×√V (V a square, at most g²)"

    def feasible(self, grid, limit=None):
        return [s * s for s in range(1, grid + 1)]

    def refusal(self, v, grid):
        return square_refusal(self.name, v, grid, self.feasible(grid))

    def forward(self, module, x):
        import torch.nn.functional as F

        b, p, d = x.features.shape
        grid = x.features.transpose(1, 2).reshape(b, d, x.grid, x.grid)
        pooled = F.adaptive_avg_pool2d(grid, math.isqrt(module.visual_tokens))
        return pooled.flatten(2).transpose(1, 2)

    def flops(self, shape):
        return shape.grid * shape.grid * shape.dim

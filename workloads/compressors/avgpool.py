"""``avgpool``: adaptive 2-D average pooling of the g×g patch grid to √V×√V."""

from __future__ import annotations

import math

from .base import CompressorKind, register, square_refusal


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

"""``none``: every patch token, uncompressed (LLaVA-1.5's 576 tokens on CLIP ViT-L/14-336)."""

from __future__ import annotations

from .base import CompressorKind, either, names, register


@register
class NoCompression(CompressorKind):
    name = "none"
    order = 0
    summary = "all g² patch tokens, uncompressed (V must be g²)"

    def feasible(self, grid, limit=None):
        return [grid * grid]

    def refusal(self, v, grid):
        patches = grid * grid
        if v == patches:
            return None
        return (f"compressor 'none' keeps all {patches} patch tokens of the {grid}x{grid} grid, so visual_tokens "
                f"must be {patches} (got {v}); use {either([n for n in names() if n != self.name])} to compress")

    def forward(self, module, x):
        return x.features

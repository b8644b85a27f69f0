"""The torch side of a compressor: one ``nn.Module`` whose layers and forward pass its kind
defines (:mod:`.base`), built after the kind has checked V."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import check_visual_tokens, kind
from .base import CompressorKind, Shape


@dataclass(frozen=True)
class CompressorInputs:
    """What a compressor may look at.

    ``features``: patch tokens of the projected-from layer, [B, P, D] with P = grid².
    ``layers``: the vision encoder's patch tokens at each requested layer (QueCC's keys/values).
    ``query``: the LLM's embedding of the user question, [B, H_llm] (QueCC only).
    """

    features: torch.Tensor
    grid: int
    layers: tuple[torch.Tensor, ...] = ()
    query: torch.Tensor | None = None


class Compressor(nn.Module):
    def __init__(self, compressor: CompressorKind, shape: Shape):
        super().__init__()
        self.kind, self.shape = compressor, shape
        self.visual_tokens, self.grid = shape.visual_tokens, shape.grid
        self.needs_query = compressor.needs_query
        self.num_layers = shape.num_layers if compressor.reads_layers else 0  # encoder layers it reads
        compressor.init(self, shape)

    def forward(self, x: CompressorInputs) -> torch.Tensor:
        return self.kind.forward(self, x)

    def flops_per_image(self) -> int:
        """Analytic forward FLOPs (multiply-add = 2) beyond the parameter-free reshapes."""
        return self.kind.flops(self.shape)

    def extra_repr(self) -> str:
        return f"{self.kind.name}, visual_tokens={self.visual_tokens}, grid={self.grid}"


def build_compressor(name: str, visual_tokens: int, grid: int, dim: int, llm_dim: int, heads: int,
                     num_layers: int) -> Compressor:
    check_visual_tokens(name, visual_tokens, grid)
    return Compressor(kind(name), Shape(visual_tokens, grid, dim, llm_dim, heads, num_layers))


def mlp_norm(d_in: int, d_out: int) -> nn.Sequential:
    """Linear–GELU–Linear–LayerNorm (QueCC's query and key/value MLPs)."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out), nn.LayerNorm(d_out))


def attention_flops(queries: int, keys: int, dim: int, kdim: int) -> int:
    """q/k/v/out projections + scores + weighted sum of one cross-attention."""
    return 2 * (queries * dim * dim + 2 * keys * kdim * dim + queries * dim * dim) + 4 * queries * keys * dim

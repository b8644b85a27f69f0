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


def mlp_norm(d_in: int, d_out: int, eps: float = 1e-5, norm: bool = True) -> nn.Sequential:
    """Linear–GELU–Linear(–LayerNorm): the query and key/value networks of QueCC and TokenPacker."""
    layers = [nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out)]
    return nn.Sequential(*layers, *([nn.LayerNorm(d_out, eps=eps)] if norm else []))


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Every Linear of ``module`` from ``trunc_normal_(std)`` — bounds ±2 in absolute terms, so in
    effect a normal — biases zero; LayerNorms 1 and 0 (TokenPacker's initialisation, applied to its
    layers and its MLP)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def regions(tokens: torch.Tensor, grid: int, k: int) -> torch.Tensor:
    """[B, g², C] row-major on the g×g grid → [B·V, k², C]: the k×k patches of each of the V regions,
    regions row-major per image (the order of the queries a region attention pairs them with)."""
    b, c, side = tokens.shape[0], tokens.shape[-1], grid // k
    blocks = tokens.reshape(b, side, k, side, k, c).permute(0, 1, 3, 2, 4, 5)
    return blocks.reshape(b * side * side, k * k, c)


def attention_flops(queries: int, keys: int, dim: int, kdim: int) -> int:
    """q/k/v/out projections + scores + weighted sum of one cross-attention."""
    return 2 * (queries * dim * dim + 2 * keys * kdim * dim + queries * dim * dim) + 4 * queries * keys * dim

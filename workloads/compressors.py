"""Visual-token compressors: patch features [B, P, D] on a g×g grid → exactly V tokens [B, V, D].

An explicit registry (``COMPRESSORS``) maps the names the experiment spec uses to classes; the
rules for which V each can produce live in :mod:`workloads.token_rules` (pure, shared with the
spec validator) and are enforced again here at build time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .token_rules import check_visual_tokens


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
    needs_query: bool = False
    num_layers: int = 0  # how many encoder layers it reads besides ``features``

    def __init__(self, visual_tokens: int, grid: int):
        super().__init__()
        self.visual_tokens, self.grid = visual_tokens, grid

    def flops_per_image(self, dim: int) -> int:
        """Analytic forward FLOPs (multiply-add = 2) beyond the parameter-free reshapes."""
        return 0


class NoCompression(Compressor):
    def forward(self, x: CompressorInputs) -> torch.Tensor:
        return x.features


class AvgPool(Compressor):
    """Adaptive 2-D average pooling of the g×g patch grid to √V×√V."""

    def __init__(self, visual_tokens: int, grid: int):
        super().__init__(visual_tokens, grid)
        self.side = math.isqrt(visual_tokens)

    def forward(self, x: CompressorInputs) -> torch.Tensor:
        b, p, d = x.features.shape
        grid = x.features.transpose(1, 2).reshape(b, d, x.grid, x.grid)
        pooled = F.adaptive_avg_pool2d(grid, self.side)
        return pooled.flatten(2).transpose(1, 2)

    def flops_per_image(self, dim: int) -> int:
        return self.grid * self.grid * dim


def _mlp_norm(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out), nn.LayerNorm(d_out))


def _attention_flops(queries: int, keys: int, dim: int, kdim: int) -> int:
    # q/k/v/out projections + scores + weighted sum
    return 2 * (queries * dim * dim + 2 * keys * kdim * dim + queries * dim * dim) + 4 * queries * keys * dim


class Resampler(Compressor):
    """V learned queries cross-attending to all patch tokens (Perceiver / Q-Former style)."""

    def __init__(self, visual_tokens: int, grid: int, dim: int, heads: int):
        super().__init__(visual_tokens, grid)
        self.queries = nn.Parameter(torch.randn(visual_tokens, dim) * dim**-0.5)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: CompressorInputs) -> torch.Tensor:
        kv = self.norm_kv(x.features)
        q = self.queries.unsqueeze(0).expand(kv.shape[0], -1, -1)
        out, _ = self.attn(q, kv, kv, need_weights=False)
        out = out + q
        return out + self.ffn(self.norm_out(out))

    def flops_per_image(self, dim: int) -> int:
        p, v = self.grid * self.grid, self.visual_tokens
        return _attention_flops(v, p, dim, dim) + 2 * v * 4 * dim * dim


class QueCC(Compressor):
    """Query-based convolutional cross-attention (Li et al., 2025).

    The question's embedding from the LLM (last non-pad hidden state) is projected to the vision
    width (Linear + LayerNorm) and added to every patch token; an MLP + LayerNorm follows. A
    depthwise Conv2d with kernel = stride = k = g/√V turns the g×g grid into V queries, and each
    query cross-attends only to its own k×k region of keys/values built from several encoder
    layers (each through Linear–GELU–Linear–LayerNorm, then concatenated on channels).
    """

    needs_query = True

    def __init__(self, visual_tokens: int, grid: int, dim: int, llm_dim: int, heads: int, num_layers: int):
        super().__init__(visual_tokens, grid)
        self.num_layers = num_layers
        self.k = grid // math.isqrt(visual_tokens)
        self.query_proj = nn.Sequential(nn.Linear(llm_dim, dim), nn.LayerNorm(dim))
        self.query_mlp = _mlp_norm(dim, dim)
        self.downsample = nn.Conv2d(dim, dim, kernel_size=self.k, stride=self.k, groups=dim)
        self.kv_mlps = nn.ModuleList(_mlp_norm(dim, dim) for _ in range(num_layers))
        self.attn = nn.MultiheadAttention(dim, heads, kdim=dim * num_layers, vdim=dim * num_layers, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: CompressorInputs) -> torch.Tensor:
        if x.query is None:
            raise ValueError("quecc needs the question's query embedding")
        if len(x.layers) != self.num_layers:
            raise ValueError(f"quecc was built for {self.num_layers} key/value layers, got {len(x.layers)}")
        b, p, d = x.features.shape
        g, k, side = x.grid, self.k, x.grid // self.k
        h = x.features + self.query_proj(x.query).unsqueeze(1)
        h = self.query_mlp(h)
        queries = self.downsample(h.transpose(1, 2).reshape(b, d, g, g))  # [B, D, side, side]
        queries = queries.flatten(2).transpose(1, 2).reshape(b * side * side, 1, d)
        kv = torch.cat([mlp(layer) for mlp, layer in zip(self.kv_mlps, x.layers)], dim=-1)
        # group the g×g grid into (side×side) regions of k×k tokens: [B·V, k², C]
        kv = kv.reshape(b, side, k, side, k, -1).permute(0, 1, 3, 2, 4, 5).reshape(b * side * side, k * k, -1)
        out, _ = self.attn(queries, kv, kv, need_weights=False)
        out = self.norm_out(out + queries)
        return out.reshape(b, side * side, d)

    def flops_per_image(self, dim: int) -> int:
        p, v, c = self.grid * self.grid, self.visual_tokens, dim * self.num_layers
        mlps = 2 * p * 2 * dim * dim * (1 + self.num_layers)
        return mlps + 2 * p * dim + v * _attention_flops(1, self.k * self.k, dim, c)


COMPRESSORS: dict[str, type[Compressor]] = {
    "none": NoCompression,
    "avgpool": AvgPool,
    "resampler": Resampler,
    "quecc": QueCC,
}


def build_compressor(
    name: str, visual_tokens: int, grid: int, dim: int, llm_dim: int, heads: int, num_layers: int
) -> Compressor:
    check_visual_tokens(name, visual_tokens, grid)
    if name == "resampler":
        return Resampler(visual_tokens, grid, dim, heads)
    if name == "quecc":
        return QueCC(visual_tokens, grid, dim, llm_dim, heads, num_layers)
    return COMPRESSORS[name](visual_tokens, grid)

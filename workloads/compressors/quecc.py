"""``quecc``: query-based convolutional cross-attention (Li et al., 2025), the study's compressor.

The question's embedding from the LLM (last non-pad hidden state) is projected to the vision
width (Linear + LayerNorm) and added to every patch token; an MLP + LayerNorm follows. A
depthwise Conv2d with kernel = stride = k = g/√V turns the g×g grid into V queries, and each
query cross-attends only to its own k×k region of keys/values built from several encoder layers
(each through Linear–GELU–Linear–LayerNorm, then concatenated on channels).
"""

from __future__ import annotations

import math

from .base import CompressorKind, listed, register, square_refusal


@register
class QueCC(CompressorKind):
    name = "quecc"
    order = 3
    summary = "question-conditioned depthwise-conv queries, each attending to its own k×k region (√V divides g)"
    needs_query = True
    reads_layers = True

    def feasible(self, grid, limit=None):
        return [(grid // k) ** 2 for k in range(grid, 0, -1) if grid % k == 0]

    def refusal(self, v, grid):
        why = square_refusal(self.name, v, grid, self.feasible(grid))
        if why is None and grid % math.isqrt(v) != 0:
            why = (f"compressor 'quecc' downsamples the {grid}x{grid} patch grid with kernel = stride = k, so "
                   f"sqrt(visual_tokens) must divide {grid} (got {v}); valid: {listed(self.feasible(grid))}")
        return why

    def init(self, m, s):
        from torch import nn

        from .module import mlp_norm

        m.k = s.grid // math.isqrt(s.visual_tokens)
        m.query_proj = nn.Sequential(nn.Linear(s.llm_dim, s.dim), nn.LayerNorm(s.dim))
        m.query_mlp = mlp_norm(s.dim, s.dim)
        m.downsample = nn.Conv2d(s.dim, s.dim, kernel_size=m.k, stride=m.k, groups=s.dim)
        m.kv_mlps = nn.ModuleList(mlp_norm(s.dim, s.dim) for _ in range(s.num_layers))
        m.attn = nn.MultiheadAttention(s.dim, s.heads, kdim=s.dim * s.num_layers, vdim=s.dim * s.num_layers,
                                       batch_first=True)
        m.norm_out = nn.LayerNorm(s.dim)

    def forward(self, m, x):
        import torch

        if x.query is None:
            raise ValueError("quecc needs the question's query embedding")
        if len(x.layers) != m.num_layers:
            raise ValueError(f"quecc was built for {m.num_layers} key/value layers, got {len(x.layers)}")
        b, p, d = x.features.shape
        g, k, side = x.grid, m.k, x.grid // m.k
        h = x.features + m.query_proj(x.query).unsqueeze(1)
        h = m.query_mlp(h)
        queries = m.downsample(h.transpose(1, 2).reshape(b, d, g, g))  # [B, D, side, side]
        queries = queries.flatten(2).transpose(1, 2).reshape(b * side * side, 1, d)
        kv = torch.cat([mlp(layer) for mlp, layer in zip(m.kv_mlps, x.layers)], dim=-1)
        # group the g×g grid into (side×side) regions of k×k tokens: [B·V, k², C]
        kv = kv.reshape(b, side, k, side, k, -1).permute(0, 1, 3, 2, 4, 5).reshape(b * side * side, k * k, -1)
        out, _ = m.attn(queries, kv, kv, need_weights=False)
        out = m.norm_out(out + queries)
        return out.reshape(b, side * side, d)

    def flops(self, s):
        from .module import attention_flops

        p, v, c = s.grid * s.grid, s.visual_tokens, s.dim * s.num_layers
        k = s.grid // math.isqrt(v)
        mlps = 2 * p * 2 * s.dim * s.dim * (1 + s.num_layers)
        return mlps + 2 * p * s.dim + v * attention_flops(1, k * k, s.dim, c)

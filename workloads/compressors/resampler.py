"""``resampler``: V learned queries cross-attending to all patch tokens (Perceiver / Q-Former style)."""

from __future__ import annotations

from .base import CompressorKind, attention_shapes, layer_norm, linear, register


@register
class Resampler(CompressorKind):
    name = "resampler"
    order = 2
    summary = "V learned queries cross-attending to every patch token (any V ≥ 1)"

    def feasible(self, grid, limit=None):
        return list(range(1, (limit or grid * grid) + 1))

    def refusal(self, v, grid):
        return None

    def parameter_shapes(self, s):
        d = s.dim
        return {"queries": (s.visual_tokens, d), **layer_norm("norm_kv.", d), **attention_shapes("attn.", d),
                **layer_norm("norm_out.", d), **linear("ffn.0.", d, 2 * d), **linear("ffn.2.", 2 * d, d)}

    def init(self, m, s):
        import torch
        from torch import nn

        m.queries = nn.Parameter(torch.randn(s.visual_tokens, s.dim) * s.dim**-0.5)
        m.norm_kv = nn.LayerNorm(s.dim)
        m.attn = nn.MultiheadAttention(s.dim, s.heads, batch_first=True)
        m.norm_out = nn.LayerNorm(s.dim)
        m.ffn = nn.Sequential(nn.Linear(s.dim, 2 * s.dim), nn.GELU(), nn.Linear(2 * s.dim, s.dim))

    def forward(self, m, x):
        kv = m.norm_kv(x.features)
        q = m.queries.unsqueeze(0).expand(kv.shape[0], -1, -1)
        out, _ = m.attn(q, kv, kv, need_weights=False)
        out = out + q
        return out + m.ffn(m.norm_out(out))

    def flops(self, s):
        from .module import attention_flops

        p, v = s.grid * s.grid, s.visual_tokens
        return attention_flops(v, p, s.dim, s.dim) + 2 * v * 4 * s.dim * s.dim

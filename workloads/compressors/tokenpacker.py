"""``tokenpacker``: point-to-region cross-attention (TokenPacker, Li et al., 2024), the compressor
the study trained its grid with, as its reference builds it (CircleRadon/TokenPacker,
``multimodal_projector/builder.py``; tests/workloads/test_reference_compressors.py holds it to the
reference's outputs). The reference fixes the downsampling at 2×2; the study varies it, so here
any k = g/√V that divides the patch grid (k = 1: every patch, no compression).

    queries   Q = LayerNorm(Linear(bilinear_{g→g/k}(x)))    no bias; the interpolation in float32
    keys      K = LayerNorm(MLP_K(concat_l x_l))            the kv_layers concatenated (4 × 1024 → 1024)
    values    W = LayerNorm(MLP_V(concat_l x_l))
    output    Attention(Q_r, K_r, W_r) per region r         each query attends to its own k×k patches

MLP is Linear–GELU–Linear, LayerNorm eps 1e-6; every Linear (its MLP projector's too) starts from
``trunc_normal_(std=0.02)`` (bounds ±2, absolute: in effect a normal) and zero bias. The reference holds the MLP projector inside
the module (``mlp.0``, ``mlp.2``); here it is the VLM's projector, loaded from those keys.
"""

from __future__ import annotations

import math

from .base import RegionKind, attention_shapes, layer_norm, linear, mlp_shapes, register

EPS = 1e-6


@register
class TokenPacker(RegionKind):
    name = "tokenpacker"
    order = 4
    summary = ("bilinearly downsampled queries, each attending to its own k×k region of multi-level "
               "features (√V divides g)")
    reads_layers = True
    reference_layout = (("q_proj_1.", "compressor.query_proj."), ("ln_q_1.", "compressor.query_norm."),
                        ("k_proj_1.", "compressor.key_net."), ("ln_k_1.", "compressor.key_norm."),
                        ("v_proj_1.", "compressor.value_net."), ("ln_v_1.", "compressor.value_norm."),
                        ("clip_attn.", "compressor.attn."), ("mlp.0.", "projector.net.0."),
                        ("mlp.2.", "projector.net.2."))

    def parameter_shapes(self, s):
        d, c = s.dim, s.dim * s.num_layers
        return {**linear("query_proj.", d, d, bias=False), **layer_norm("query_norm.", d),
                **mlp_shapes("key_net.", c, d, norm=False), **layer_norm("key_norm.", d),
                **mlp_shapes("value_net.", c, d, norm=False), **layer_norm("value_norm.", d),
                **attention_shapes("attn.", d)}

    def init(self, m, s):
        from torch import nn

        from .module import mlp_norm, trunc_normal_init

        d, c = s.dim, s.dim * s.num_layers
        m.k = s.grid // math.isqrt(s.visual_tokens)
        m.query_proj = nn.Linear(d, d, bias=False)
        m.query_norm = nn.LayerNorm(d, eps=EPS)
        m.key_net, m.key_norm = mlp_norm(c, d, norm=False), nn.LayerNorm(d, eps=EPS)
        m.value_net, m.value_norm = mlp_norm(c, d, norm=False), nn.LayerNorm(d, eps=EPS)
        m.attn = nn.MultiheadAttention(d, s.heads, batch_first=True)
        trunc_normal_init(m)

    def init_projector(self, projector):
        from .module import trunc_normal_init

        trunc_normal_init(projector)

    def forward(self, m, x):
        import torch
        import torch.nn.functional as F

        from .module import regions

        if len(x.layers) != m.num_layers:
            raise ValueError(f"tokenpacker was built for {m.num_layers} key/value layers, got {len(x.layers)}")
        b, _, d = x.features.shape
        g, side = x.grid, x.grid // m.k
        multi = torch.cat(x.layers, dim=-1)
        keys = regions(m.key_norm(m.key_net(multi)), g, m.k)
        values = regions(m.value_norm(m.value_net(multi)), g, m.k)
        grid = x.features.reshape(b, g, g, d).permute(0, 3, 1, 2).float()
        points = F.interpolate(grid, size=(side, side), mode="bilinear").permute(0, 2, 3, 1)
        queries = m.query_norm(m.query_proj(points.reshape(b * side * side, 1, d).to(x.features.dtype)))
        out, _ = m.attn(queries, keys, values, need_weights=False)
        return out.reshape(b, side * side, d)

    def flops(self, s):
        from .module import attention_flops

        p, v, d = s.grid * s.grid, s.visual_tokens, s.dim
        k = s.grid // math.isqrt(v)
        interpolate = 8 * v * d  # four taps, weighted and summed, per output channel
        kv = 2 * (2 * p * (d * s.num_layers) * d + 2 * p * d * d)
        return interpolate + 2 * v * d * d + kv + v * attention_flops(1, k * k, d, d)

"""``quecc``: query-based convolutional cross-attention (Li et al., 2025), the study's proposed
compressor for extreme compression, as its reference builds it (locuslab/llava-token-compression,
``multimodal_projector/quecc.py``; tests/workloads/test_reference_compressors.py holds it to the reference's
outputs).

    question  q = LayerNorm(Linear(h_LLM))             the LLM's last non-pad hidden state of the question
    queries   Q = Conv_k(MLPnorm(x + q))               depthwise, kernel = stride = k = g/√V: V queries
    keys      K = MLPnorm_K(concat_l x_l)              the kv_layers concatenated on channels (4 × 1024 → 1024)
    values    W = MLPnorm_V(concat_l x_l)              a network of its own
    output    Attention(Q_r, K_r, W_r) per region r    each query attends to its own k×k patches only

MLPnorm is Linear–GELU–Linear–LayerNorm (eps 1e-6); the attention runs at the tower's width; the
output is the attention's (no residual, no norm). The MLP projector into the LLM follows, and the
reference saves both as ``mm_projector.bin`` (QueCC under ``0.``, the MLP under ``1.`` and ``3.``).
"""

from __future__ import annotations

import math

from .base import RegionKind, attention_shapes, layer_norm, linear, mlp_shapes, register

EPS = 1e-6


@register
class QueCC(RegionKind):
    name = "quecc"
    order = 3
    summary = "question-conditioned depthwise-conv queries, each attending to its own k×k region (√V divides g)"
    needs_query = True
    reads_layers = True
    revision = 2  # 1: one key/value network per layer, concatenated; an output residual and LayerNorm
    reference_layout = (("0.text_projection.", "compressor.question_proj."), ("0.q_proj.", "compressor.query_mlp."),
                        ("0.q_downsample.", "compressor.downsample."), ("0.k_proj.", "compressor.key_net."),
                        ("0.v_proj.", "compressor.value_net."), ("0.clip_attn.", "compressor.attn."),
                        ("1.", "projector.net.0."), ("3.", "projector.net.2."))

    def parameter_shapes(self, s):
        d, k = s.dim, s.grid // math.isqrt(s.visual_tokens)
        return {**linear("question_proj.0.", s.llm_dim, d), **layer_norm("question_proj.1.", d),
                **mlp_shapes("query_mlp.", d, d),
                "downsample.weight": (d, 1, k, k), "downsample.bias": (d,),
                **mlp_shapes("key_net.", d * s.num_layers, d), **mlp_shapes("value_net.", d * s.num_layers, d),
                **attention_shapes("attn.", d)}

    def init(self, m, s):
        from torch import nn

        from .module import mlp_norm

        d = s.dim
        m.k = s.grid // math.isqrt(s.visual_tokens)
        m.question_proj = nn.Sequential(nn.Linear(s.llm_dim, d), nn.LayerNorm(d, eps=EPS))
        m.query_mlp = mlp_norm(d, d, EPS)
        m.downsample = nn.Conv2d(d, d, kernel_size=m.k, stride=m.k, groups=d)
        m.key_net = mlp_norm(d * s.num_layers, d, EPS)
        m.value_net = mlp_norm(d * s.num_layers, d, EPS)
        m.attn = nn.MultiheadAttention(d, s.heads, batch_first=True)

    def forward(self, m, x):
        import torch

        from .module import regions

        if x.query is None:
            raise ValueError("quecc needs the question's query embedding")
        if len(x.layers) != m.num_layers:
            raise ValueError(f"quecc was built for {m.num_layers} key/value layers, got {len(x.layers)}")
        b, _, d = x.features.shape
        g = x.grid
        h = m.query_mlp(x.features + m.question_proj(x.query).unsqueeze(1))
        queries = m.downsample(h.transpose(1, 2).reshape(b, d, g, g))  # [B, D, g/k, g/k]
        queries = queries.flatten(2).transpose(1, 2).reshape(-1, 1, d)  # a query per region: [B·V, 1, D]
        multi = torch.cat(x.layers, dim=-1)
        keys, values = regions(m.key_net(multi), g, m.k), regions(m.value_net(multi), g, m.k)
        out, _ = m.attn(queries, keys, values, need_weights=False)
        return out.reshape(b, -1, d)

    def flops(self, s):
        from .module import attention_flops

        p, v, d = s.grid * s.grid, s.visual_tokens, s.dim
        k = s.grid // math.isqrt(v)
        question = 2 * s.llm_dim * d
        query_mlp = 2 * p * 2 * d * d
        conv = 2 * p * d  # each of the V·D outputs sums k² products
        kv = 2 * (2 * p * (d * s.num_layers) * d + 2 * p * d * d)
        return question + query_mlp + conv + kv + v * attention_flops(1, k * k, d, d)

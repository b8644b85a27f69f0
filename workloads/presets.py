"""Tiny model presets: functions returning transformers config objects (random init, CPU-trainable).

The LLM family is Qwen2 (the study's family) from ``hidden 32 × 2 layers`` to ``hidden 192 × 4
layers``: non-embedding parameters span ~74×, like 0.5B→7B spans 14×. Anything that is not a
preset name is treated as a Hugging Face model name or local path (see :mod:`workloads.model`).

Import-light: transformers is imported inside the functions so the experiment spec can ask
``is_llm_preset`` without pulling torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LLMShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int


@dataclass(frozen=True)
class VisionShape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    image_size: int
    patch_size: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


LLM_PRESETS: dict[str, LLMShape] = {
    "tiny-xs": LLMShape(hidden=32, layers=2, heads=4, kv_heads=2, ffn=64),
    "tiny-s": LLMShape(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128),
    "tiny-m": LLMShape(hidden=96, layers=3, heads=4, kv_heads=2, ffn=192),
    "tiny-l": LLMShape(hidden=128, layers=4, heads=4, kv_heads=2, ffn=256),
    "tiny-xl": LLMShape(hidden=192, layers=4, heads=6, kv_heads=2, ffn=384),
}

VISION_PRESETS: dict[str, VisionShape] = {
    # 64 px images of a 4×4 scene, 8 px patches: an 8×8 patch grid, each scene cell 2×2 patches
    "vit-tiny": VisionShape(hidden=64, layers=2, heads=4, ffn=128, image_size=64, patch_size=8),
    # one patch per scene cell: the cheapest encoder, for smoke tests and the fastest demos
    "vit-micro": VisionShape(hidden=32, layers=1, heads=2, ffn=64, image_size=64, patch_size=16),
    # a 24×24 patch grid like CLIP ViT-L/14-336, so every V of the study is producible
    "vit-tiny-24": VisionShape(hidden=32, layers=2, heads=4, ffn=64, image_size=96, patch_size=4),
}


# Real architectures with random weights: the study's shapes, for benchmarks and dry runs of memory
# and throughput at real scale without downloading a checkpoint. Not part of the tiny family.
REAL_LLM_SHAPES: dict[str, LLMShape] = {
    "qwen2-0.5b-shape": LLMShape(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864),
    "qwen2-7b-shape": LLMShape(hidden=3584, layers=28, heads=28, kv_heads=4, ffn=18944),
}
REAL_VISION_SHAPES: dict[str, VisionShape] = {
    # CLIP ViT-L/14 at 336 px, LLaVA-1.5's tower: a 24×24 patch grid, 576 patches
    "clip-vit-l-336-shape": VisionShape(hidden=1024, layers=24, heads=16, ffn=4096, image_size=336, patch_size=14),
}


def llm_shape(name: str) -> LLMShape:
    return LLM_PRESETS[name] if name in LLM_PRESETS else REAL_LLM_SHAPES[name]


def vision_shape(name: str) -> VisionShape:
    return VISION_PRESETS[name] if name in VISION_PRESETS else REAL_VISION_SHAPES[name]


def llm_non_embedding_params(name: str) -> int:
    """Non-embedding parameters of an LLM preset, analytically (Qwen2: q/k/v biases, no o bias,
    SwiGLU MLP, RMSNorm weights); tests check it against the built model."""
    s = llm_shape(name)
    head_dim = s.hidden // s.heads
    kv = s.kv_heads * head_dim
    attention = (s.hidden * s.hidden + s.hidden) + 2 * (s.hidden * kv + kv) + s.hidden * s.hidden
    layer = attention + 3 * s.hidden * s.ffn + 2 * s.hidden
    return s.layers * layer + s.hidden


def is_llm_preset(name: str) -> bool:
    return name in LLM_PRESETS or name in REAL_LLM_SHAPES


def is_vision_preset(name: str) -> bool:
    return name in VISION_PRESETS or name in REAL_VISION_SHAPES


def llm_config(name: str, vocab_size: int, max_positions: int = 512):
    """A Qwen2 config for the preset ``name``; embeddings tied as in the small Qwen models.

    Weights start at std 1/sqrt(hidden) (fan-in) instead of Qwen's 0.02, which is tuned for
    widths in the thousands: at hidden 64 it left attention near-uniform and measured training
    on the synthetic tasks stuck at the majority-answer plateau for hundreds of steps longer.
    """
    from transformers import Qwen2Config

    s = llm_shape(name)
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=s.hidden,
        intermediate_size=s.ffn,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        use_cache=False,
        initializer_range=s.hidden**-0.5,
    )


def vision_config(name: str):
    """A CLIP vision config for the preset ``name``."""
    from transformers import CLIPVisionConfig

    s = vision_shape(name)
    return CLIPVisionConfig(
        hidden_size=s.hidden,
        intermediate_size=s.ffn,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        image_size=s.image_size,
        patch_size=s.patch_size,
        num_channels=3,
        attention_dropout=0.0,
    )

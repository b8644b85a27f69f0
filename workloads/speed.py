"""The training step's speed levers — each a ``training`` setting, measured lever by lever in
``bench/gpu_cell.py``; a default is the value measured safe everywhere (same numbers on every
device), a lever that moves the last digits is off until chosen:

    attention        sdpa (default) | eager | flash_attention_2 — the LLM's and tower's kernel
    fused_optimizer  AdamW as one fused kernel per step instead of a loop over tensors
    compile          blocks: torch.compile each transformer block (regional: compile time stays
                     small and one block's graph serves every layer)
    logits           supervised: the LM head runs only where a label is (an answer token) and in
                     chunks whose logits are recomputed in backward, not kept — the vocabulary's
                     logits (151k entries for Qwen) are a cell's largest activation, and most
                     positions (image and prompt tokens) carry no label

The loss of ``logits: supervised`` is the same mean cross-entropy over the shifted labels that
the model's own loss computes (a test holds them equal to float tolerance); evaluation always
uses the full logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE = -100
CHUNK = 4096  # positions whose logits exist at once


def set_attention(model: nn.Module, implementation: str) -> None:
    """The attention kernel of every transformer the model holds (``flash_attention_2`` needs the
    flash-attn package and a GPU: transformers refuses it otherwise, naming what is missing)."""
    for tower in (model.llm, model.vision):
        if tower.config._attn_implementation != implementation:
            tower.set_attn_implementation(implementation)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks: every module its towers declare unsplittable (Hugging Face's
    ``_no_split_modules``: the LLM's decoder layers, the tower's encoder layers) — what FSDP shards
    one by one and regional compilation compiles."""
    names = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names and m is not model]


def compile_blocks(model: nn.Module) -> None:
    """torch.compile each transformer block in place (before any parallel wrapper, as torchtitan)."""
    for block in transformer_blocks(model):
        block.compile()


def supervised_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Mean cross-entropy of next-token prediction over the labelled positions only: hidden [B, T, D]
    at position t predicts labels[t + 1]; logits are made ``CHUNK`` positions at a time and
    recomputed in backward."""
    target = labels[:, 1:]
    keep = target != IGNORE
    h, y = hidden[:, :-1][keep], target[keep]
    if not len(y):
        return hidden.sum() * 0.0

    def chunk_loss(hh: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(hh).float(), yy, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, len(y), CHUNK):
        total = total + checkpoint(chunk_loss, h[i:i + CHUNK], y[i:i + CHUNK], use_reentrant=False)
    return total / len(y)

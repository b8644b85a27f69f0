"""What one image costs at inference before the LLM sees it, analytically: the FLOPs of a built
VLM's vision tower and compressor (with the projector).

Pure at import (no torch). A cell reports these parts with its results (``inference_flops_vision``,
``inference_flops_compressor``, ``compressor_reads_question``); they do not depend on the prompt.
The LLM's prefill ``2·N·(Q + V)`` and the whole VLM's cost are priced from them by the scaling-law
engine (orchestrator/scaling/cost.py: ``llm_prefill_flops``, ``vlm_inference_flops``) with the
experiment's one Q (``spec.fit.text_tokens``), so every figure of a cell uses the same Q.

    vision encoder     2 · N_vision · T_vision  T_vision = patches (+ class token)
    compressor         its own analytic count, plus the projector's 2 · N_projector · V
    question pass      a compressor that reads the question (QueCC) runs the LLM over it first:
                       the engine adds 2 · N · Q for it

Multiply-accumulate = 2 FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageCost:
    vision_flops: float
    compressor_flops: float  # the compressor and the projector
    reads_question: bool  # the compressor needs the LLM's pass over the question (QueCC)

    def as_metrics(self) -> dict[str, float]:
        return {"inference_flops_vision": self.vision_flops, "inference_flops_compressor": self.compressor_flops,
                "compressor_reads_question": float(self.reads_question)}


def image_cost(vision_params: int, vision_tokens: int, compressor_flops: float, reads_question: bool) -> ImageCost:
    return ImageCost(vision_flops=2.0 * vision_params * vision_tokens, compressor_flops=float(compressor_flops),
                     reads_question=reads_question)


def model_image_cost(model) -> ImageCost:
    """The analytic image cost of a built :class:`workloads.model.VisionLanguageModel`."""
    from .model import count_parameters

    patches = model.grid * model.grid
    # CLIP runs a class token through every layer as well (SigLIP has none)
    embeddings = getattr(model.vision, "vision_model", model.vision).embeddings
    vision_tokens = patches + (1 if hasattr(embeddings, "class_embedding") else 0)
    comp = model.compressor.flops_per_image() + 2.0 * count_parameters(model.projector) * model.visual_tokens
    return image_cost(count_parameters(model.vision), vision_tokens, comp, model.compressor.needs_query)

"""What one sample costs at inference, analytically: the FLOPs of a built VLM, part by part.

Pure at import (no torch). Logged with every cell (``inference_flops*``); the scaling-law
engine's FLOPs cost model (orchestrator/scaling/cost.py) prices a grid point with the same
LLM prefill formula.

    LLM prefill        2 · N · (Q + V)          N = LLM non-embedding parameters
    vision encoder     2 · N_vision · T_vision  T_vision = patches (+ class token)
    compressor         its own analytic count (QueCC adds a question pass 2 · N · Q_question)

Multiply-accumulate = 2 FLOPs; attention's quadratic term is left out of the LLM part, as in the
study (it is small for short prompts).
"""

from __future__ import annotations

from dataclasses import dataclass


def llm_prefill_flops(llm_params: float, visual_tokens: float, text_tokens: float):
    """``2 · N · (Q + V)``; works elementwise on numpy arrays too."""
    return 2 * llm_params * (text_tokens + visual_tokens)


@dataclass(frozen=True)
class InferenceCost:
    llm_flops: float
    vision_flops: float
    compressor_flops: float
    text_tokens: float
    visual_tokens: int

    @property
    def total_flops(self) -> float:
        return self.llm_flops + self.vision_flops + self.compressor_flops

    def as_metrics(self) -> dict[str, float]:
        return {
            "inference_flops": self.total_flops,
            "inference_flops_llm": self.llm_flops,
            "inference_flops_vision": self.vision_flops,
            "inference_flops_compressor": self.compressor_flops,
            "text_tokens": self.text_tokens,
        }


def inference_cost(llm_params: int, visual_tokens: int, text_tokens: float, vision_params: int,
                   vision_tokens: int, compressor_flops: float, question_tokens: float = 0.0) -> InferenceCost:
    return InferenceCost(
        llm_flops=llm_prefill_flops(llm_params, visual_tokens, text_tokens),
        vision_flops=2.0 * vision_params * vision_tokens,
        compressor_flops=compressor_flops + 2.0 * llm_params * question_tokens,
        text_tokens=text_tokens,
        visual_tokens=visual_tokens,
    )


def model_inference_cost(model, text_tokens: float, question_tokens: float) -> InferenceCost:
    """The analytic cost of one sample for a built :class:`workloads.model.VisionLanguageModel`."""
    from .model import count_parameters, llm_parameter_counts

    patches = model.grid * model.grid
    # CLIP runs a class token through every layer as well (SigLIP has none)
    embeddings = getattr(model.vision, "vision_model", model.vision).embeddings
    vision_tokens = patches + (1 if hasattr(embeddings, "class_embedding") else 0)
    llm_n = llm_parameter_counts(model.llm)["non_embedding"]
    comp = model.compressor.flops_per_image() + 2.0 * count_parameters(model.projector) * model.visual_tokens
    return inference_cost(llm_n, model.visual_tokens, text_tokens, count_parameters(model.vision), vision_tokens,
                          comp, question_tokens if model.compressor.needs_query else 0.0)


def sample_cost(model, probe) -> InferenceCost:
    """The analytic cost of the first sample of ``probe`` (a collated Batch): its prompt's text
    tokens (placeholders excluded) and, for query-conditioned compressors, its question tokens."""
    return model_inference_cost(model, float(probe.text_tokens[0]), float(probe.query_mask[0].sum()))

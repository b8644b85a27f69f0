"""What a cell reports, by kind: curves (a value at every log step: loss, lr, samples/s), results
(its final error and eval loss, per task and benchmark) and constants (what the cell *is*: its
sizes, its image cost, where it resumed from).

Pure (no torch). The tracker logs constants as MLflow params, once, and everything else as metrics
by step, so a cell's page charts its curves and its results, not one-point charts of its sizes.
"""

from __future__ import annotations

# the final report's keys that are not measurements over training
CONSTANTS = (
    "llm_params", "llm_params_total", "vision_params", "compressor_params", "projector_params", "total_params",
    "visual_tokens", "inference_flops_vision", "inference_flops_compressor", "compressor_reads_question",
    "prefill_latency_s", "resumed_from_step",
)
CONSTANT_PREFIXES = ("seconds/stage/",)  # the time a cell spent in each stage
BOOKKEEPING = ("final", "step")  # the final report's mark and the x-axis: neither a metric nor a param
CURVES = ("loss", "lr", "grad_norm", "samples_per_s", "stage")  # training curves, a point every log step


def is_constant(key: str) -> bool:
    return key in CONSTANTS or key.startswith(CONSTANT_PREFIXES)

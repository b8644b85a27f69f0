"""The accelerators a study's price can be stated on: each one's dense BF16 tensor peak (NVIDIA's
data sheets, SXM parts, without structured sparsity). The spec's ``price.accelerator`` choices, its
schema and the docs derive from this table. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: float  # dense BF16 FLOP/s
    summary: str


ACCELERATORS: dict[str, Accelerator] = {a.name: a for a in (
    Accelerator("H100", 989.4e12, "NVIDIA H100 SXM, 989 TFLOP/s dense BF16"),
    Accelerator("H200", 989.4e12, "NVIDIA H200 SXM, 989 TFLOP/s dense BF16 (the H100's compute, more memory)"),
    Accelerator("B200", 2.25e15, "NVIDIA B200, 2.25 PFLOP/s dense BF16"),
    Accelerator("A100", 312e12, "NVIDIA A100, 312 TFLOP/s dense BF16"),
    Accelerator("L40S", 362.05e12, "NVIDIA L40S, 362 TFLOP/s dense BF16"),
    Accelerator("L4", 121e12, "NVIDIA L4, 121 TFLOP/s dense BF16"),
)}

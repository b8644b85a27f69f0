"""A study's price before it runs: the training compute of every cell and of the whole study, and
the GPU-hours it comes to on the spec's accelerator at an assumed utilisation (``spec.price``).

    FLOPs(cell) = Σ over its stages  6 · N · (V + T) · steps · batch

with N the LLM's parameters (the size ``fit.nominal_sizes`` or the model's name states; a preset's
counted non-embedding parameters), V the cell's visual tokens and T the text tokens of a training
sample — the same ≈ 6·N·tokens the proposals cost a cell with (scaling/design.training_cost). The
vision tower's and the compressor's share is left out (the LLM dominates from 0.5B on). GPU-hours
= FLOPs / (peak · MFU · 3600), every figure that is assumed said so. Pure: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.presets import is_llm_preset, llm_non_embedding_params

from ..scaling.design import training_cost
from ..spec.accelerators import ACCELERATORS
from ..spec.sizes import nominal_size

SYNTHETIC_TEXT_TOKENS = 12.0  # a synthetic question and answer, in tokens


@dataclass(frozen=True)
class CellPrice:
    key: str
    llm: str
    n: float | None  # None: no size known for its LLM
    samples: int  # over every stage
    flops: float | None


@dataclass(frozen=True)
class StudyPrice:
    cells: tuple[CellPrice, ...]
    accelerator: str
    peak_flops: float
    mfu: float
    text_tokens: str  # how T was set, in words
    sizes: str  # how N was set, in words
    unknown: tuple[str, ...]  # LLMs without a size (their cells are not priced)

    @property
    def flops(self) -> float:
        return sum(c.flops for c in self.cells if c.flops is not None)

    @property
    def gpu_hours(self) -> float:
        return self.flops / (self.peak_flops * self.mfu * 3600.0)

    def hours(self, flops: float) -> str:
        h = flops / (self.peak_flops * self.mfu * 3600.0)
        return f"{h:,.0f} GPU-hours" if h >= 10 else f"{h:.2g} GPU-hours" if h >= 0.01 else f"{h * 3600:.2g} GPU-seconds"

    def lines(self) -> list[str]:
        priced = [c for c in self.cells if c.flops is not None]
        out = [f"price: {len(priced)} of {len(self.cells)} cells, {self.flops:.3g} training FLOPs (6·N·tokens over "
               f"every stage), ≈ {self.hours(self.flops)} on {self.accelerator} at an assumed "
               f"{self.mfu:.0%} MFU (spec.price)"]
        if priced:
            top = max(priced, key=lambda c: c.flops or 0.0)
            out.append(f"  largest cell {top.key}: {top.flops or 0.0:.3g} FLOPs, ≈ {self.hours(top.flops or 0.0)}")
        out.append(f"  N: {self.sizes}; T: {self.text_tokens}")
        if self.unknown:
            out.append(f"  not priced: {', '.join(self.unknown)} states no size; give it in fit.nominal_sizes")
        return out

    def spent_and_left(self, finished: set[str]) -> list[str]:
        """The training compute of the finished cells and of the rest, in words (``status``)."""
        spent = sum(c.flops or 0.0 for c in self.cells if c.key in finished)
        left = sum(c.flops or 0.0 for c in self.cells if c.key not in finished)
        return [f"compute: spent {spent:.3g} training FLOPs (≈ {self.hours(spent)}), left {left:.3g} "
                f"(≈ {self.hours(left)}) on {self.accelerator} at an assumed {self.mfu:.0%} MFU (spec.price)"]

    def as_dict(self) -> dict:
        return {"flops": self.flops, "gpu_hours": self.gpu_hours, "accelerator": self.accelerator,
                "peak_flops": self.peak_flops, "mfu": self.mfu, "mfu_assumed": True, "n": self.sizes,
                "text_tokens": self.text_tokens, "unpriced_llms": list(self.unknown),
                "cells": [{"cell": c.key, "n": c.n, "samples": c.samples, "flops": c.flops} for c in self.cells]}


def llm_size(ref: str, given: dict[str, float] | None) -> tuple[float | None, str]:
    """(N, how it is known) of an LLM without reading it."""
    stated = nominal_size(ref, given)
    if stated is not None:
        return stated, "nominal"
    if is_llm_preset(ref):
        return float(llm_non_embedding_params(ref)), "counted"
    return None, ""


def _text_tokens(exp) -> tuple[float | None, str]:
    p, d = exp.spec.price, exp.spec.data
    if p.text_tokens is not None:
        return p.text_tokens, f"{p.text_tokens:g} text tokens a sample (spec.price.text_tokens)"
    if d.source == "synthetic":
        return SYNTHETIC_TEXT_TOKENS, f"{SYNTHETIC_TEXT_TOKENS:g} text tokens a sample (the synthetic tasks')"
    return None, (f"at most data.max_length ({d.max_length:,}) less V tokens a sample, an upper bound; give "
                  "spec.price.text_tokens for your data's mean")


GPU_HOURS = "gpuh"  # a budget's unit suffix: GPU hours at spec.price


def budget_flops(value: str | float | None, exp) -> float | None:
    """A budget as training FLOPs: a number of FLOPs, or GPU hours (``200gpuh``) on ``spec.price``'s
    accelerator at its MFU; None (no cap) when neither it nor ``spec.fit.budget`` gives one. A
    ValueError names a value that is neither."""
    if value is None and exp is not None:
        value = exp.spec.fit.budget
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.endswith(GPU_HOURS):
        if exp is None:
            raise ValueError("GPU hours apply to an experiment (its spec.price)")
        price = exp.spec.price
        flops = float(text[:-len(GPU_HOURS)]) * ACCELERATORS[price.accelerator].peak_flops * price.mfu * 3600.0
    else:
        flops = float(text)
    if not flops > 0:
        raise ValueError("a budget must be positive")
    return flops


def study_price(exp, cells=None) -> StudyPrice:
    """What training every cell of ``exp`` (or ``cells``, e.g. every planned one) costs, stated on
    ``spec.price``'s assumptions."""
    s = exp.spec
    text, text_words = _text_tokens(exp)
    priced, unknown, hows = [], [], set()
    for c in exp.cells() if cells is None else cells:
        n, how = llm_size(c.llm, s.fit.nominal_sizes)
        hows.add(how)
        stages = c.config.train.stages or ()
        runs = [(st.steps, st.batch_size) for st in stages] or [(c.config.train.steps, c.config.train.batch_size)]
        samples = sum(steps * batch for steps, batch in runs)
        if n is None:
            unknown.append(c.llm)
            priced.append(CellPrice(c.key, c.llm, None, samples, None))
            continue
        t = text if text is not None else max(c.config.data.max_length - c.visual_tokens, 0)
        priced.append(CellPrice(c.key, c.llm, n, samples,
                                sum(training_cost(n, c.visual_tokens, t, steps * batch) for steps, batch in runs)))
    hows.discard("")
    sizes = " and ".join(sorted({"nominal": "the size each model's name or fit.nominal_sizes states",
                                 "counted": "presets' non-embedding parameters, counted"}[h] for h in hows)) or "none"
    a = ACCELERATORS[s.price.accelerator]
    return StudyPrice(tuple(priced), a.name, a.peak_flops, s.price.mfu, text_words, sizes,
                      tuple(dict.fromkeys(unknown)))

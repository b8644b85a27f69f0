"""The optimizer and the learning rate of every step — decided here and nowhere else.

    peak   = lr · w_ref / w_LLM        with training.lr_reference_width = w_ref (μP-style width scaling)
           = lr                        without it, or when lr was calibrated for this LLM
    lr(t)  = peak · (t + 1) / W                                   t < W = round(warmup_ratio · steps)
           = peak · (m + (1 − m) · ½ (1 + cos(π · p)))             p = (t − W) / (steps − W), m = min_lr_ratio

``lr`` comes from the spec (or from its calibration, orchestrator/plan/calibration.py, which then turns
width scaling off for that LLM: a searched rate is used as found).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TrainConfig


@dataclass(frozen=True)
class LRSchedule:
    peak: float
    steps: int
    warmup_ratio: float
    min_lr_ratio: float

    @property
    def warmup(self) -> int:
        return max(1, int(round(self.warmup_ratio * self.steps)))

    def factor(self, step: int) -> float:
        """lr(step) / peak: linear warmup, then cosine decay to ``min_lr_ratio``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def at(self, step: int) -> float:
        return self.peak * self.factor(step)


def schedule(cfg: TrainConfig, llm_hidden: int) -> LRSchedule:
    """The learning rate of every step of a cell whose LLM is ``llm_hidden`` wide (module docstring)."""
    peak = cfg.lr * cfg.lr_reference_width / llm_hidden if cfg.lr_reference_width else cfg.lr
    return LRSchedule(peak, cfg.steps, cfg.warmup_ratio, cfg.min_lr_ratio)


def make_optimizer(model, lr: float, cfg: TrainConfig):
    """AdamW over the trainable parameters, with the training's betas and weight decay
    (``fused_optimizer``: one kernel per step)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay,
                             **({"fused": True} if cfg.fused_optimizer else {}))


def make_scheduler(optimizer, lr: LRSchedule):
    import torch

    def factor(step: int) -> float:  # a function, not a bound method: LambdaLR keeps it out of its state_dict
        return lr.factor(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

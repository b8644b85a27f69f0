"""vlmscale's workload: one grid cell — a LLaVA-style VLM trained and evaluated with Ray Train.

The public facade. Config objects are pure; the model, data and training loop load torch on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import CellConfig, DataConfig, ModelConfig, TrainConfig

_LAZY = {
    "build_vlm": "model", "VisionLanguageModel": "model", "parameter_counts": "model",
    "build_compressor": "compressors", "SyntheticVQA": "data.synthetic", "LlavaDataset": "data.llava",
    "train": "train", "train_loop_per_worker": "train", "train_local": "train",
    "build_trainer": "launch", "pretrain_vision": "pretrain_vision",
    "image_cost": "flops", "model_image_cost": "flops", "FaultConfig": "config",
}

__all__ = ["CellConfig", "DataConfig", "ModelConfig", "TrainConfig", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

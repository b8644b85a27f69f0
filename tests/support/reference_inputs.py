"""Deterministic weights and inputs shared by the golden-output script (tests/fixtures/reference/
make_golden.py, which runs the reference modules) and the tests that compare vlmscale against its
numbers: every array is a function of its name and shape alone, from numpy's legacy RandomState
(whose stream numpy keeps fixed across versions), so the golden file stores outputs, not 100 MB of
weights."""

from __future__ import annotations

import hashlib

import numpy as np


def normal(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 values seeded by ``name`` and ``shape``."""
    seed = int.from_bytes(hashlib.sha256(f"{name}{tuple(shape)}".encode()).digest()[:4], "little")
    return np.random.RandomState(seed).standard_normal(int(np.prod(shape))).astype(np.float32).reshape(shape)


def weight(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """A plausible value for the parameter ``key``: LayerNorm scales near 1, small biases, matrices
    and kernels scaled by their fan-in (so activations stay of order one through every layer)."""
    x = normal(key, shape)
    if key.endswith("bias"):
        return (0.05 * x).astype(np.float32)
    if len(shape) == 1:  # a LayerNorm's scale
        return (1.0 + 0.1 * x).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (x / np.sqrt(fan_in)).astype(np.float32)


def state(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {k: weight(k, s) for k, s in shapes.items()}


def compressor_inputs(grid: int, dim: int, layers: int, text_dim: int, batch: int = 1):
    """(patch features [B, g², D], the key/value layers [B, g², D] each, the question's embedding [B, T])."""
    p = grid * grid
    features = normal("features", (batch, p, dim))
    multi = tuple(normal(f"layer{i}", (batch, p, dim)) for i in range(layers))
    text = normal("question", (batch, text_dim))
    return features, multi, text

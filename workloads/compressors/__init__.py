"""Visual-token compressors, one file each, found here at import (see :mod:`.base`).

``names()``, ``check_visual_tokens`` and ``feasible_visual_tokens`` are pure: the spec uses them
to validate a grid in milliseconds. ``build_compressor`` (and the module types) load torch on
first use.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import Any

from .base import REGISTRY, CompressorKind, Shape, VisualTokenError, listed, names

_NOT_KINDS = {"base", "module"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _NOT_KINDS and not _info.name.startswith("_"):
        import_module(f"{__name__}.{_info.name}")


def kind(name: str) -> CompressorKind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise VisualTokenError(f"unknown compressor {name!r}; choose one of {', '.join(names())}") from None


def feasible_visual_tokens(compressor: str, grid: int, limit: int | None = None) -> list[int]:
    """All V ``compressor`` can produce on a ``grid``×``grid`` patch grid (unbounded ones: up to ``limit``)."""
    return kind(compressor).feasible(grid, limit)


def aligned_visual_tokens(compressor: str, grid: int) -> list[int]:
    """The V ``compressor`` produces without straddling the patch grid (:meth:`CompressorKind.aligned`)."""
    return kind(compressor).aligned(grid)


def check_visual_tokens(compressor: str, visual_tokens: int, grid: int) -> None:
    """Raise :class:`VisualTokenError` with the reason and the valid choices if V is impossible."""
    k = kind(compressor)
    v = visual_tokens
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise VisualTokenError(f"visual_tokens must be a positive integer, got {v!r}")
    why = k.refusal(v, grid)
    if why is not None:
        raise VisualTokenError(why)


_LAZY = {"Compressor": "module", "CompressorInputs": "module", "build_compressor": "module"}

__all__ = ["CompressorKind", "Shape", "VisualTokenError", "aligned_visual_tokens", "check_visual_tokens", "feasible_visual_tokens", "kind",
           "listed", "names", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Sanity limits on what an experiment may ask for, checked before anything runs or is submitted.

A spec travels in a Kubernetes ConfigMap, which holds at most 1 MiB; a grid of a million cells or a
billion training steps is a typo far more often than a plan. ``--force`` lifts the scale caps (not
the ConfigMap limit, which the API server enforces anyway).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import SpecError
from .experiment import Experiment

CONFIGMAP_BYTES = 1 << 20  # the API server's limit on a ConfigMap's data
MAX_SPEC_BYTES = CONFIGMAP_BYTES - 16 * 1024  # room for the object's metadata and the digest annotation
MAX_CELLS = 5_000
MAX_CELL_STEPS = 50_000_000  # cells × training steps (the paper's grid: 120 cells × 5,200 = 624k)


def check_spec_file(path: Path) -> None:
    """Refuse a spec file too large to submit, before reading it."""
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {size / 2**20:.1f} MiB — a spec is submitted as a ConfigMap, which holds at most "
                        f"1 MiB ({MAX_SPEC_BYTES:,} bytes for the spec): move long lists (e.g. explicit grid "
                        "points or data) into files the spec references")


def grid_cells(exp: Experiment) -> int:
    """How many cells the grid asks for, without expanding it."""
    g = exp.spec.grid
    lists: tuple[list, ...] = (g.llms or [], g.visual_tokens or [], g.compressors or [], g.tasks or [], g.seeds or [])
    axes = math.prod(len(axis) for axis in lists) if g.llms is not None else 0
    return axes + len(g.points or [])


def check_scale(exp: Experiment, force: bool = False) -> None:
    """Refuse a grid beyond the sanity caps unless ``force``."""
    if force:
        return
    cells = grid_cells(exp)
    steps = cells * exp.spec.training.total_steps
    if cells > MAX_CELLS:
        raise SpecError(f"{exp.name}: spec.grid asks for {cells:,} cells (more than {MAX_CELLS:,}): check the grid's "
                        "axes, or pass --force if you mean it")
    if steps > MAX_CELL_STEPS:
        raise SpecError(f"{exp.name}: {cells:,} cells × {exp.spec.training.total_steps:,} steps of spec.training = {steps:,} "
                        f"training steps (more than {MAX_CELL_STEPS:,}): check the grid and the steps, or pass "
                        "--force if you mean it")

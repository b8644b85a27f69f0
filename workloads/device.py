"""Where tensors live: the one place that moves data to the model's device, builds the tensors
collectives reduce, and times work on an accelerator.

Why one module: NCCL reduces CUDA tensors only, and a CUDA model rejects CPU inputs. Every path
that hands a tensor to the model or to ``torch.distributed`` (training batches, evaluation
batches, metric reductions, the latency probe) goes through :func:`to_device` /
:func:`device_tensor` / :func:`all_reduce_sum`, and every placement goes through :func:`_place`,
so a test can check the whole workload for tensors that skipped it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist


def _place(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # pinned host memory lets a CUDA copy overlap with compute; elsewhere non_blocking is a no-op
    return tensor.to(device, non_blocking=tensor.device.type == "cpu" and tensor.is_pinned())


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor on ``device``: tensors, dicts, lists/tuples and dataclasses (a Batch)."""
    if isinstance(obj, torch.Tensor):
        return _place(obj, device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_device(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def device_tensor(values: Sequence[float] | Sequence[Sequence[float]], device: torch.device,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Host numbers as a tensor on ``device`` (e.g. the operand of a collective)."""
    return _place(torch.tensor(values, dtype=dtype), device)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values: torch.Tensor | Sequence[float] | Sequence[Sequence[float]],
                   device: torch.device) -> torch.Tensor:
    """Sum over ranks, on ``device`` (the process group's device: CUDA under NCCL).

    Host numbers are placed on ``device`` first; a tensor elsewhere is moved. Without a process
    group the values come back unchanged (as a tensor on ``device``).
    """
    t = values if isinstance(values, torch.Tensor) else device_tensor(values, device)
    if t.device != device:
        t = _place(t, device)
    if distributed():
        dist.all_reduce(t)
    return t


def all_reduce_mean(value: float, device: torch.device) -> float:
    """The mean of one host number over ranks."""
    if not distributed():
        return value
    return float(all_reduce_sum([value], device)) / dist.get_world_size()


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device``: host timers are meaningless on an async device without it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type not in ("cpu", "meta"):
        backend = getattr(torch, device.type, None)
        if backend is not None and hasattr(backend, "synchronize"):
            backend.synchronize()


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` on ``device`` (see :func:`timings`)."""
    return statistics.median(timings(fn, device, repeats, warmup))


def timings(fn: Callable[[], Any], device: torch.device, repeats: int = 7, warmup: int = 2) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn()`` on ``device``, after ``warmup`` untimed ones:
    CUDA events on a GPU (device time, no host jitter), a host clock between two device
    synchronisations elsewhere."""
    for _ in range(warmup):
        fn()
    return [seconds_of(fn, device) for _ in range(repeats)]


def seconds_of(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn()`` takes on ``device``, everything it queued included."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def rng_states(device: torch.device) -> dict:
    """This process's torch RNG states: CPU always, the accelerator's when the model lives there."""
    out = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_states(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

"""A CPU stand-in for "is every tensor on the model's device?".

On a CPU-only machine the model and the host share one device, so a missing ``.to(device)`` goes
unnoticed until a GPU run fails ("Expected all tensors to be on the same device", or NCCL's "No
backend type associated with device type cpu"). The audit tracks placement instead: a tensor is
*on the device* if the workload placed it there (``workloads.device._place``), if it is a model
parameter or buffer, or if an operation computed it from such a tensor (tracked in a torch
dispatch mode). Every tensor handed to the model's forward or to a ``torch.distributed``
reduction must be on the device; anything else is exactly what breaks on a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakTensorKeyDictionary

from workloads import device as devmod


class Placement(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.on_device = WeakTensorKeyDictionary()

    def mark(self, t: torch.Tensor) -> None:
        self.on_device[t] = True

    def placed(self, t: torch.Tensor) -> bool:
        return t in self.on_device

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if any(self.placed(t) for t in inputs):
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.mark(t)
        return out


class DeviceAudit:
    """Records every tensor that reaches the model or a collective without being on the device."""

    def __init__(self):
        self.placement = Placement()
        self.violations: list[str] = []
        self.model_calls = 0
        self.collectives = 0

    def _check(self, where: str, tensors) -> None:
        for t in pytree.tree_leaves(tensors):
            if isinstance(t, torch.Tensor) and not self.placement.placed(t):
                self.violations.append(f"{where}: a {tuple(t.shape)} {t.dtype} tensor never placed on the device")

    def _forward_pre_hook(self, module, args, kwargs):
        for p in list(module.parameters()) + list(module.buffers()):
            self.placement.mark(p)
        self.model_calls += 1
        self._check(f"{type(module).__name__}.forward", (args, kwargs))

    @contextlib.contextmanager
    def watching(self, monkeypatch):
        from workloads.model import VisionLanguageModel

        original_place = devmod._place

        def place(tensor, device):
            out = original_place(tensor, device)
            self.placement.mark(out)
            return out

        def reduction(name):
            original = getattr(dist, name)

            def checked(tensor, *args, **kwargs):
                self.collectives += 1
                self._check(f"torch.distributed.{name}", tensor)
                return original(tensor, *args, **kwargs)

            return checked

        monkeypatch.setattr(devmod, "_place", place)
        for name in ("all_reduce", "broadcast", "reduce"):
            monkeypatch.setattr(dist, name, reduction(name))
        original_call = VisionLanguageModel.__call__

        def call(module, *args, **kwargs):  # forward pre-hooks do not see keyword arguments
            self._forward_pre_hook(module, args, kwargs)
            return original_call(module, *args, **kwargs)

        monkeypatch.setattr(VisionLanguageModel, "__call__", call)
        with self.placement:
            yield self

"""Parallelism strategies: the optimizer step, gradient accumulation and checkpoint format.

``DDPEngine`` (torch DistributedDataParallel; gloo on CPU, NCCL on GPU, as the process group was
set up by Ray Train or torchrun), ``FSDPEngine`` (FSDP2: sharded parameters, gradients and
optimizer state) and ``DeepSpeedEngine`` (ZeRO stage 1–3) share one interface so the training
loop does not branch on the strategy; ``ENGINES`` names them (the spec's ``training.strategy``).

A checkpoint directory holds the full training state: weights, optimizer, LR scheduler, the step
(which is also the data position: batches are a pure function of the step) and each rank's RNG
states, so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .device import rng_states, set_rng_states
from .optim import LRSchedule, make_optimizer, make_scheduler
from .speed import transformer_blocks

STATE_FILE = "state.json"


def rng_state(device: torch.device) -> dict:
    """Every RNG's state as tensors and plain numbers only, so a checkpoint loads with
    ``torch.load(weights_only=True)``: nothing in it is unpickled as an arbitrary object (checkpoints
    sit on shared storage; whoever can write there must not be able to run code in training pods)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {**rng_states(device),
            "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss": gauss}}


def set_rng_state(state: dict, device: torch.device) -> None:
    set_rng_states(state, device)
    n, py = state["numpy"], state["python"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def read_step(directory: Path) -> int:
    """The global step a checkpoint was taken at."""
    return int(_read_state(directory, None)["step"])


class DDPEngine:
    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, lr: LRSchedule,
                 micro: int | None = None):
        self.cfg, self.device = cfg, device
        self.micro = micro or cfg.batch_size // max(cfg.grad_accum, 1)
        self.module = model.to(device)
        if _distributed():
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        else:
            self.model = self.module
        self.optimizer = make_optimizer(self.module, lr.peak, cfg)
        self.scheduler = make_scheduler(self.optimizer, lr)
        self.dtype = torch.bfloat16 if cfg.precision == "bf16" else None

    def autocast(self):
        """bf16 mixed precision (fp32 master weights) for training, evaluation and probes."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def loss(self, inputs: dict[str, torch.Tensor], last_micro_step: bool) -> torch.Tensor:
        sync = contextlib.nullcontext() if last_micro_step or self.model is self.module else self.model.no_sync()
        with sync, self.autocast():
            loss = self.model(**inputs).loss
            (loss / self.cfg.grad_accum).backward()
        return loss.detach()

    def step(self) -> torch.Tensor:
        """The optimizer step; returns the pre-clipping gradient norm (on the device: no host sync)."""
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path, rank: int, step: int) -> None:
        if rank == 0:
            torch.save(self.module.state_dict(), directory / "model.pt")
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                       directory / "optimizer.pt")
            (directory / STATE_FILE).write_text(json.dumps({"step": step, "strategy": "ddp"}))
        torch.save(rng_state(self.device), directory / f"rng_rank{rank}.pt")

    def load(self, directory: Path, rank: int, optimizer: bool = True) -> int:
        """Weights and RNG states — and, inside a stage, the optimizer and schedule too."""
        state = _read_state(directory, "ddp")
        self.module.load_state_dict(torch.load(directory / "model.pt", map_location=self.device, weights_only=True))
        if optimizer:
            opt = torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(opt["optimizer"])
            self.scheduler.load_state_dict(opt["scheduler"])
        _load_rng(directory, rank, self.device)
        return int(state["step"])

    def close(self) -> None:
        pass


class FSDPEngine(DDPEngine):
    """FSDP2 (``torch.distributed.fsdp.fully_shard``): each transformer block of the LLM and the
    tower (their ``_no_split_modules``) is sharded across the ranks, then the whole model; with
    ``precision: bf16`` blocks compute in bf16 while the sharded parameters and the optimizer
    state stay fp32 (``MixedPrecisionPolicy``). A checkpoint gathers the full state on rank 0 in
    DDP's files (``model.pt`` holds plain weights), so it loads with ``weights_only=True`` and a
    resume — on any world size — is bit-exact. One process: plain training, as DDP's."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, lr: LRSchedule,
                 micro: int | None = None):
        self.cfg, self.device = cfg, device
        self.micro = micro or cfg.batch_size // max(cfg.grad_accum, 1)
        self.module = model.to(device)
        self.dtype = torch.bfloat16 if cfg.precision == "bf16" else None
        self.sharded = _distributed()
        from torch.distributed.fsdp import FSDPModule

        if self.sharded and not isinstance(self.module, FSDPModule):  # a later stage keeps the first's shards
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mesh = init_device_mesh(device.type, (dist.get_world_size(),))
            policy = MixedPrecisionPolicy(param_dtype=self.dtype, reduce_dtype=torch.float32) if self.dtype \
                else MixedPrecisionPolicy()
            for block in transformer_blocks(self.module):
                fully_shard(block, mesh=mesh, mp_policy=policy)
            fully_shard(self.module, mesh=mesh, mp_policy=policy)
        if self.sharded:
            self.dtype = None  # the policy casts: no autocast on top
        self.model = self.module
        self.optimizer = make_optimizer(self.module, lr.peak, cfg)
        self.scheduler = make_scheduler(self.optimizer, lr)

    def loss(self, inputs: dict[str, torch.Tensor], last_micro_step: bool) -> torch.Tensor:
        if self.sharded:  # gradients are reduced once, at the accumulation boundary
            self.module.set_requires_gradient_sync(last_micro_step)
        with self.autocast():
            loss = self.module(**inputs).loss
            (loss / self.cfg.grad_accum).backward()
        return loss.detach()

    def step(self) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_([p for p in self.module.parameters() if p.grad is not None],
                                              self.cfg.grad_clip)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a DTensor when sharded
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def save(self, directory: Path, rank: int, step: int) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        # every rank takes part in the gather; rank 0 writes the full state
        weights, optim = get_state_dict(self.module, self.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(weights, directory / "model.pt")
            torch.save({"optimizer": optim, "scheduler": self.scheduler.state_dict()}, directory / "optimizer.pt")
            (directory / STATE_FILE).write_text(json.dumps({"step": step, "strategy": "fsdp"}))
        torch.save(rng_state(self.device), directory / f"rng_rank{rank}.pt")

    def load(self, directory: Path, rank: int, optimizer: bool = True) -> int:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state = _read_state(directory, "fsdp")
        weights = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        saved = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True) if optimizer else None
        set_state_dict(self.module, self.optimizer, model_state_dict=weights,
                       optim_state_dict=saved["optimizer"] if saved else {},
                       options=StateDictOptions(full_state_dict=True, strict=saved is not None))
        if saved:
            self.scheduler.load_state_dict(saved["scheduler"])
        _load_rng(directory, rank, self.device)
        return int(state["step"])


class DeepSpeedEngine:
    """ZeRO through ``deepspeed.initialize`` on the process group Ray Train (or torchrun) created."""

    TAG = "state"

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, lr: LRSchedule, micro_batch: int):
        import deepspeed

        self.cfg, self.device, self.micro = cfg, device, micro_batch
        optimizer = make_optimizer(model, lr.peak, cfg)
        scheduler = make_scheduler(optimizer, lr)
        ds_config = {
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": cfg.grad_accum,
            "gradient_clipping": cfg.grad_clip,
            "zero_optimization": {"stage": cfg.zero_stage},
            "bf16": {"enabled": cfg.precision == "bf16"},
            "fp16": {"enabled": False},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler,
            model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config,
            dist_init_required=False,
        )
        self.module = self.engine.module

    def autocast(self):
        # DeepSpeed holds the module itself in bf16 when precision is bf16
        return contextlib.nullcontext()

    def loss(self, inputs: dict[str, torch.Tensor], last_micro_step: bool) -> torch.Tensor:
        loss = self.engine(**inputs).loss
        self.engine.backward(loss)
        self.engine.step()  # DeepSpeed applies the update only at the accumulation boundary
        return loss.detach()

    def step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path, rank: int, step: int) -> None:
        self.engine.save_checkpoint(str(directory), tag=self.TAG, client_state={"step": step})
        if rank == 0:
            (directory / STATE_FILE).write_text(json.dumps({"step": step, "strategy": "deepspeed"}))
        torch.save(rng_state(self.device), directory / f"rng_rank{rank}.pt")

    def load(self, directory: Path, rank: int, optimizer: bool = True) -> int:
        state = _read_state(directory, "deepspeed")
        self.engine.load_checkpoint(str(directory), tag=self.TAG, load_optimizer_states=optimizer,
                                    load_lr_scheduler_states=optimizer)
        _load_rng(directory, rank, self.device)
        return int(state["step"])

    def close(self) -> None:
        # without this a rank sometimes aborts at exit when the process group is torn down
        self.engine.destroy()


ENGINES = {"ddp": DDPEngine, "fsdp": FSDPEngine, "deepspeed": DeepSpeedEngine}  # training.strategy's choices


def _read_state(directory: Path, strategy: str | None) -> dict:
    path = directory / STATE_FILE
    if not path.exists():
        raise RuntimeError(f"checkpoint {directory} is incomplete: {STATE_FILE} is missing")
    state = json.loads(path.read_text())
    if strategy is not None and state.get("strategy") != strategy:
        raise RuntimeError(
            f"checkpoint {directory} was written by strategy {state.get('strategy')!r}, not {strategy!r}; "
            "resume with the strategy it was trained with"
        )
    return state


def _load_rng(directory: Path, rank: int, device: torch.device) -> None:
    path = directory / f"rng_rank{rank}.pt"
    if path.exists():  # a different world size: keep this rank's fresh RNG
        set_rng_state(torch.load(path, weights_only=True), device)

"""Device correctness without a GPU: the helper places on any device, NCCL's device rule is
reproduced on CPU, and a whole cell under a process group hands the model and the collectives
only tensors that live on the model's device (see tests/support/device_audit.py)."""

import socket

import pytest
import torch
import torch.distributed as dist

from tests.support.device_audit import DeviceAudit
from workloads import device as devmod
from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig
from workloads.data.batch import Collator, ImageTransform
from workloads.data.synthetic import SyntheticVQA
from workloads.tokenizer import synthetic_tokenizer
from workloads.train import train_local

META = torch.device("meta")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def process_group(request):
    backend = getattr(request, "param", "gloo")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_to_device_moves_every_tensor_of_a_batch():
    tok = synthetic_tokenizer()
    ds = SyntheticVQA("shapes", "eval", 4, seed=0)
    batch = Collator(tok, 4, ImageTransform(64))([ds[0], ds[1]])
    moved = devmod.to_device(batch, META)
    for name in ("input_ids", "attention_mask", "labels", "pixel_values", "query_ids", "query_mask"):
        assert getattr(moved, name).device == META, name
    assert moved.tasks == batch.tasks and moved.image_token_id == batch.image_token_id
    nested = devmod.to_device({"a": [torch.ones(2), (torch.zeros(1), 3)]}, META)
    assert nested["a"][0].device == META and nested["a"][1][0].device == META and nested["a"][1][1] == 3


def _strict_meta_backend():
    """A backend that, like NCCL for CUDA, reduces tensors of one device type only (here: meta)."""
    from torch.testing._internal.distributed.fake_pg import _create_fake_pg

    if "vlmscale_strict" not in dist.Backend.backend_list:
        dist.Backend.register_backend("vlmscale_strict", _create_fake_pg, extended_api=True, devices=["meta"])
    return "vlmscale_strict"


def test_reductions_use_the_process_groups_device():
    """NCCL refuses host tensors ("No backend type associated with device type cpu"); the same
    rule, on CPU, with a backend registered for the meta device only."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group(_strict_meta_backend(), store=FakeStore(), rank=0, world_size=2)
    try:
        with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
            dist.all_reduce(torch.tensor([1.0]))
        out = devmod.all_reduce_sum([1.0, 2.0], META)
        assert out.device == META and out.dtype == torch.float64 and out.shape == (2,)
        rows = devmod.all_reduce_sum(torch.ones(3, 4), META)  # a host tensor is moved first
        assert rows.device == META
    finally:
        dist.destroy_process_group()


def _cell(strategy="ddp", **train):
    return CellConfig(
        model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="quecc", visual_tokens=4, freeze_vision=False),
        data=DataConfig(tasks=("shapes", "text"), train_size=200, eval_size=16),
        train=TrainConfig(**{"steps": 4, "batch_size": 4, "grad_accum": 2, "checkpoint_every": 2, "log_every": 1,
                             "eval_every": 2, "strategy": strategy, **train}),
    )


def test_a_cell_under_a_process_group_keeps_every_tensor_on_the_model_device(tmp_path, monkeypatch, process_group):
    audit = DeviceAudit()
    with audit.watching(monkeypatch):
        metrics, _ = train_local(_cell(), tmp_path)
    assert audit.violations == []
    # the audit saw what it guards: training, evaluation and probe forwards, and the reductions
    assert audit.model_calls > 4 * 2 and audit.collectives >= 4
    assert 0.0 <= metrics["error"] <= 1.0 and metrics["prefill_latency_s"] > 0


def test_the_audit_catches_a_host_tensor_handed_to_the_model(tmp_path, monkeypatch, process_group):
    """The audit itself: an evaluation that skips the move to the device is reported."""
    import workloads.evaluate as evaluate

    monkeypatch.setattr(evaluate, "to_device", lambda batch, device: batch)
    audit = DeviceAudit()
    with audit.watching(monkeypatch):
        train_local(_cell(steps=2), tmp_path)
    assert audit.violations and all("VisionLanguageModel.forward" in v for v in audit.violations)


def test_the_audit_catches_a_host_tensor_handed_to_a_collective(tmp_path, monkeypatch, process_group):
    """The bug NCCL found: eval totals reduced as a tensor built from host numbers."""
    import workloads.evaluate as evaluate

    def host_reduction(t, device):
        host = torch.tensor(t.tolist(), dtype=torch.float64)
        dist.all_reduce(host)
        return host

    monkeypatch.setattr(evaluate, "all_reduce_sum", host_reduction)
    audit = DeviceAudit()
    with audit.watching(monkeypatch):
        train_local(_cell(steps=2), tmp_path)
    assert audit.violations and all("torch.distributed.all_reduce" in v for v in audit.violations)

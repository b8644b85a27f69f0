"""Training in stages (LLaVA-1.5's recipe): each stage trains its parts at its own rate from the
last one's weights, checkpointed and resumable mid-stage and at a stage's end, bit-exactly; a part
can start from saved weights (LLaVA's mm_projector.bin)."""

from __future__ import annotations

import pytest
import torch

from workloads.config import CellConfig, DataConfig, FaultConfig, ModelConfig, StageConfig, TrainConfig
from workloads.drill import InjectedFault
from workloads.train import train_local

STAGES = (StageConfig("align", ("compressor", "projector"), 6, 5e-3, 8),
          StageConfig("instruct", ("compressor", "projector", "llm"), 6, 2e-3, 8))


def _cell(stages=STAGES, fault=None, **model):
    return CellConfig(
        model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4, **model),
        data=DataConfig(tasks=("shapes",), train_size=300, eval_size=16),
        train=TrainConfig(steps=99, batch_size=8, checkpoint_every=4, log_every=2, lr=1.0, stages=stages),
        fault=fault,
    )


def _weights(session):
    return torch.load(session.checkpoints()[-1] / "model.pt", weights_only=True)


def test_each_stage_trains_its_parts_at_its_rate(tmp_path):
    metrics, session = train_local(_cell(stages=STAGES[:1]), tmp_path / "one")
    start = _weights(session)
    from workloads.model import build_vlm
    from workloads.tokenizer import synthetic_tokenizer

    torch.manual_seed(0)
    fresh = build_vlm(_cell().model, synthetic_tokenizer()).state_dict()
    llm = [k for k in fresh if k.startswith("llm.")]
    assert all(torch.equal(start[k], fresh[k]) for k in llm)  # stage 1: the LLM frozen
    assert not torch.equal(start["projector.net.0.weight"], fresh["projector.net.0.weight"])

    metrics, session = train_local(_cell(), tmp_path / "two")
    after = _weights(session)
    assert any(not torch.equal(after[k], fresh[k]) for k in llm)  # stage 2 trains it
    steps = [h["step"] for h in session.history]
    assert steps[-1] == 12 and {h.get("stage") for h in session.history if "loss" in h} == {0.0, 1.0}
    peak = {st: max(h["lr"] for h in session.history if h.get("stage") == st) for st in (0.0, 1.0)}
    assert 2e-3 < peak[0.0] <= 5e-3 and peak[1.0] <= 2e-3  # each stage its own schedule
    assert 6 in steps and 12 in steps  # a checkpoint at each stage's end


@pytest.mark.parametrize("crash", [9, 6])  # mid stage 2; exactly at stage 1's end
def test_a_crash_in_a_later_stage_resumes_bit_exactly(tmp_path, crash):
    ref_metrics, ref = train_local(_cell(), tmp_path / "ref")
    drill = _cell(fault=FaultConfig(crash))
    with pytest.raises(InjectedFault):
        train_local(drill, tmp_path / "crash")
    metrics, resumed = train_local(drill, tmp_path / "crash")
    assert metrics["resumed_from_step"] == {9: 8, 6: 6}[crash]
    a, b = _weights(ref), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("error", "eval_loss", "loss"):
        assert metrics[key] == ref_metrics[key], key


def test_the_projector_starts_from_llavas_mm_projector(tmp_path):
    from workloads.model import build_vlm
    from workloads.tokenizer import synthetic_tokenizer

    tok = synthetic_tokenizer()
    donor = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4), tok)
    saved = tmp_path / "mm_projector.bin"
    torch.save({f"model.mm_projector.{k}": v for k, v in donor.projector.net.state_dict().items()}, saved)
    torch.manual_seed(123)  # another init: only the file can make them equal
    model = build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4,
                                  projector_from=str(saved)), tok)
    assert all(torch.equal(a, b) for a, b in zip(model.projector.state_dict().values(),
                                                 donor.projector.state_dict().values()))
    bad = tmp_path / "other.bin"
    torch.save({"model.mm_projector.0.weight": torch.zeros(3, 3)}, bad)
    from workloads.weights import WeightsMismatch

    with pytest.raises(WeightsMismatch, match=r"missing model\.mm_projector\.0\.bias, .*; shape model\.mm_projector"
                                              r"\.0\.weight is \[3, 3\], the model's is \[32, 32\]"):
        build_vlm(ModelConfig(llm="tiny-xs", vision="vit-micro", visual_tokens=4, compressor="avgpool",
                              projector_from=str(bad)), tok)

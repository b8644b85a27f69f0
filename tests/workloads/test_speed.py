"""The step's speed levers (workloads/speed.py) on CPU: each trains, and the ones that must not
change the result do not — the supervised-logits loss is the model's own loss (and gradient), the
attention kernels agree, the fused optimizer follows the loop's; regional compilation runs."""

from __future__ import annotations

import pytest
import torch

from workloads.config import CellConfig, DataConfig, ModelConfig, TrainConfig
from workloads.data.batch import Collator, ImageTransform
from workloads.data.synthetic import SyntheticVQA
from workloads.model import build_vlm
from workloads.speed import supervised_loss, transformer_blocks
from workloads.tokenizer import synthetic_tokenizer
from workloads.train import train_local


@pytest.fixture(scope="module")
def tok():
    return synthetic_tokenizer()


def _batch(tok, model, n=6):
    size = model.vision.config.image_size
    samples = [SyntheticVQA("shapes", "train", 64, seed=0, image_size=size)[i] for i in range(n)]
    return Collator(tok, model.visual_tokens, ImageTransform(size))(samples)


def test_supervised_logits_give_the_models_own_loss_and_gradient(tok, monkeypatch):
    import workloads.speed as speed

    monkeypatch.setattr(speed, "CHUNK", 3)  # several chunks even on a tiny batch
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm="tiny-s", vision="vit-micro", compressor="quecc", visual_tokens=4), tok).train()
    inputs = _batch(tok, model).model_inputs()
    full = model(**inputs).loss
    full.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.logits = "supervised"
    ours = model(**inputs).loss
    ours.backward()
    assert float(ours) == pytest.approx(float(full), rel=1e-5)
    for name, grad in want.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6), name
    model.eval()  # evaluation keeps the full logits
    assert model(**inputs).logits is not None


def test_the_blocks_are_the_towers_transformer_layers(tok):
    model = build_vlm(ModelConfig(llm="tiny-m", vision="vit-micro", compressor="avgpool", visual_tokens=4), tok)
    names = [type(b).__name__ for b in transformer_blocks(model)]
    assert names.count("Qwen2DecoderLayer") == 3 and "CLIPEncoderLayer" in names
    assert supervised_loss.__doc__


def _cell(**train):
    return CellConfig(model=ModelConfig(llm="tiny-xs", vision="vit-micro", compressor="avgpool", visual_tokens=4),
                      data=DataConfig(tasks=("shapes",), train_size=500, eval_size=32),
                      train=TrainConfig(**{"steps": 6, "batch_size": 8, "checkpoint_every": 6, "log_every": 3,
                                           **train}))


def test_each_lever_trains_and_the_exact_ones_keep_the_result(tmp_path):
    base, _ = train_local(_cell(), tmp_path / "base")
    eager, _ = train_local(_cell(attention="eager"), tmp_path / "eager")
    assert eager["eval_loss"] == pytest.approx(base["eval_loss"], rel=1e-4)  # another kernel, the same math
    fused, _ = train_local(_cell(fused_optimizer=True), tmp_path / "fused")
    assert fused["eval_loss"] == pytest.approx(base["eval_loss"], rel=1e-3)
    supervised, _ = train_local(_cell(logits="supervised"), tmp_path / "supervised")
    assert supervised["eval_loss"] == pytest.approx(base["eval_loss"], rel=1e-3)
    again, _ = train_local(_cell(), tmp_path / "again")
    assert again["eval_loss"] == base["eval_loss"]  # the default is the default: bit for bit


@pytest.mark.slow
def test_regional_compilation_trains_on_cpu(tmp_path):
    compiled, _ = train_local(_cell(compile="blocks"), tmp_path / "compiled")
    base, _ = train_local(_cell(), tmp_path / "base")
    assert compiled["eval_loss"] == pytest.approx(base["eval_loss"], rel=1e-3)


def test_length_grouped_batches_hold_similar_lengths_and_every_sample_once_an_epoch():
    from types import SimpleNamespace

    import numpy as np

    from workloads.train import GROUP_BATCHES, StepSampler

    lengths = np.random.default_rng(0).integers(10, 2000, 640)

    class Source(list):
        index = SimpleNamespace(lengths=lengths, words=lengths // 5, has_image=np.ones(640, bool))

    source = Source(range(640))
    plain, grouped = StepSampler([source], 8, seed=3), StepSampler([source], 8, seed=3, group="length")
    steps = 640 // 8
    for sampler in (plain, grouped):  # an epoch is a permutation, grouped or not
        seen = [s for t in range(steps) for s in sampler.samples(t, 0, 8)]
        assert sorted(seen) == list(range(640))
    spread = {name: np.mean([np.ptp(lengths[s.samples(t, 0, 8)]) for t in range(steps)])
              for name, s in (("plain", plain), ("grouped", grouped))}
    assert spread["grouped"] < spread["plain"] / 4  # padding follows the longest of a batch
    again = StepSampler([source], 8, seed=3, group="length")
    assert [again.samples(t, 0, 8) for t in range(steps)] == [grouped.samples(t, 0, 8) for t in range(steps)]
    assert GROUP_BATCHES > 1


def test_modality_length_grouping_is_llavas():
    """LLaVA's group_by_modality_length: every global batch all image or all text-only records (the
    two remainders last, together), sorted by words and dealt to its micro-batches so that their
    words even out; an epoch is still a permutation, the same for a seed."""
    from types import SimpleNamespace

    import numpy as np

    from workloads.train import StepSampler

    rng = np.random.default_rng(1)
    n, batch, chunks = 650, 16, 4
    words = rng.integers(5, 400, n)
    has_image = rng.random(n) < 0.7

    class Source(list):
        index = SimpleNamespace(lengths=words * 6, words=words, has_image=has_image)

    sampler = StepSampler([Source(range(n))], batch, seed=2, group="modality_length", chunks=chunks)
    plain = StepSampler([Source(range(n))], batch, seed=2)
    order = [s for t in range(-(-n // batch)) for s in sampler.samples(t, 0, batch)][:n]
    assert sorted(order) == list(range(n))
    full_image, full_text = int(has_image.sum()) // batch, int((~has_image).sum()) // batch
    batches = [np.array(order[i:i + batch]) for i in range(0, (full_image + full_text) * batch, batch)]
    assert all(has_image[b].all() or not has_image[b].any() for b in batches)
    assert sum(bool(has_image[b].all()) for b in batches) == full_image
    tail = np.array(order[len(batches) * batch:])  # the two remainders, together
    assert int(has_image[tail].sum()) == int(has_image.sum()) % batch and list(tail) == sorted(tail)

    def spread(s, t):  # max − min of the micro-batches' words within global batch t
        sums = [words[s.samples(t, c * batch // chunks, batch // chunks)].sum() for c in range(chunks)]
        return max(sums) - min(sums)

    grouped = [spread(sampler, t) for t in range(len(batches))]
    assert max(grouped) <= words.max()  # a greedy deal leaves at most one record's words between them
    assert np.mean(grouped) < np.mean([spread(plain, t) for t in range(len(batches))]) / 3
    again = StepSampler([Source(range(n))], batch, seed=2, group="modality_length", chunks=chunks)
    assert again.samples(5, 0, batch) == sampler.samples(5, 0, batch)

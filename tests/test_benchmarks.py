"""Benchmarks scored on generated answers: greedy, batched, with the KV cache — and the same answers
as a literal token-by-token decode, alone or in a left-padded batch."""

from __future__ import annotations

import pytest
import torch

from workloads import benchmarks
from workloads.config import BenchmarkConfig, EvalConfig, ModelConfig
from workloads.data.batch import Collator, transform_for
from workloads.data.chat import conversation_format
from workloads.model import build_vlm
from workloads.tokenizer import pretrained_tokenizer

from .artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    llm, clip, data = tiny_llm(d / "llm", 32, 2, bpe_tokenizer(d / "tok")), tiny_clip(d / "clip"), llava_files(d / "data")
    tok = pretrained_tokenizer(str(llm))
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm=str(llm), vision=str(clip), compressor="avgpool", visual_tokens=4), tok).eval()
    with torch.no_grad():  # random weights wide enough that answers differ from question to question
        for p in model.llm.parameters():
            p.normal_(0, 0.6)
    collate = Collator(tok, 4, transform_for(str(clip), 32), conversation_format("auto", "llava", tok))
    return model, collate, data


def _literal(model, collate, sample, steps):
    """Token by token, no cache, no padding: what greedy decoding means."""
    ids = torch.tensor([collate.prompt(sample)])
    batch = collate([sample])
    features = model.encode_images(batch.pixel_values, batch.query_ids, batch.query_mask)
    stop = collate.fmt.stop_ids(collate.tok)
    out = []
    for _ in range(steps):
        logits = model.llm(inputs_embeds=model.merge(ids, features), attention_mask=torch.ones_like(ids)).logits
        t = int(logits[0, -1].argmax())
        if t in stop:
            break
        out.append(t)
        ids = torch.cat([ids, torch.tensor([[t]])], 1)
    return collate.tok.decode(out, skip_special_tokens=True).strip()


def test_generation_is_greedy_decoding_alone_and_in_a_batch(vlm):
    model, collate, data = vlm
    b = BenchmarkConfig("colour", str(data["colour"]), "exact_match", str(data["images"]))
    questions = benchmarks.load_questions(b)[:4]
    # prompts of different lengths: the batch is left-padded
    samples = [benchmarks._sample(q, b, q["text"] + " please" * i) for i, q in enumerate(questions)]
    together = benchmarks.generate(model, collate, samples, max_new_tokens=6)
    alone = [benchmarks.generate(model, collate, [s], max_new_tokens=6)[0] for s in samples]
    literal = [_literal(model, collate, s, 6) for s in samples]
    assert together == alone == literal
    assert len(set(together)) > 1 and all(together)


def test_every_rank_answers_its_share_and_the_shares_add_up(vlm):
    model, collate, data = vlm
    cfg = EvalConfig((BenchmarkConfig("colour", str(data["colour"]), "exact_match", str(data["images"])),
                      BenchmarkConfig("pope", str(data["pope"]), "yes_no", str(data["images"]))),
                     max_new_tokens=4, batch_size=3)
    whole, speed = benchmarks.run(model, collate, cfg, rank=0, world=1)
    assert speed["generate_questions_per_s"] > 0
    halves = [benchmarks.run(model, collate, cfg, rank=r, world=2)[0].totals() for r in (0, 1)]
    for name, t in whole.totals().items():
        assert t["count"] == 8 == sum(h[name]["count"] for h in halves)
        assert t["correct"] == pytest.approx(sum(h[name]["correct"] for h in halves))
    m = benchmarks.metrics(whole)
    assert set(m) == {"error", "error/colour", "error/pope"}
    assert m["error"] == pytest.approx((m["error/colour"] + m["error/pope"]) / 2)
    assert all(0 <= v <= 1 for v in m.values())

"""Benchmarks scored on generated answers: greedy, batched, with the KV cache — and the same answers
as a literal token-by-token decode, alone or in a left-padded batch."""

from __future__ import annotations

import pytest
import torch

from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm
from workloads import benchmarks
from workloads.config import BenchmarkConfig, EvalConfig, ModelConfig
from workloads.data.batch import Collator, transform_for
from workloads.data.chat import conversation_format
from workloads.model import build_vlm
from workloads.tokenizer import pretrained_tokenizer


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    llm, clip, data = tiny_llm(d / "llm", 32, 2, bpe_tokenizer(d / "tok")), tiny_clip(d / "clip"), llava_files(d / "data")
    return _build((llm, clip, data))  # random weights wide enough that answers differ from question to question


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


def _cfg(data):
    return EvalConfig((BenchmarkConfig("colour", str(data["colour"]), "exact_match", str(data["images"])),
                       BenchmarkConfig("pope", str(data["pope"]), "pope", str(data["images"]))),
                      max_new_tokens=4, batch_size=3)


def _rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    """One of two gloo ranks: the same model, its share of the questions, every answer gathered."""
    import json
    from pathlib import Path

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    base = Path(root).parent / "artifacts"
    data = {k: Path(v) for k, v in json.loads((Path(root) / "data.json").read_text()).items()}
    model, collate, data = _build((base / "llm", base / "clip", data))
    metrics = benchmarks.run(model, collate, _cfg(data), rank, world, answers_dir=f"{out}/answers")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(metrics, f)
    dist.destroy_process_group()


def _build(parts):
    llm, clip, data = parts
    tok = pretrained_tokenizer(str(llm))
    torch.manual_seed(0)
    model = build_vlm(ModelConfig(llm=str(llm), vision=str(clip), compressor="avgpool", visual_tokens=4), tok).eval()
    with torch.no_grad():
        for p in model.llm.parameters():
            p.normal_(0, 0.6)
    return model, Collator(tok, 4, transform_for(str(clip), 32), conversation_format("auto", "llava", tok)), data


def test_ranks_answer_their_shares_and_every_rank_scores_all_answers(vlm, tmp_path):
    """Two gloo ranks: each answers every other question; the gathered answers score exactly as one
    process scores them, the same on both ranks, and rank 0 keeps every answer."""
    import json
    import socket

    import torch.multiprocessing as mp

    model, collate, data = vlm
    whole = benchmarks.run(model, collate, _cfg(data), rank=0, world=1, answers_dir=str(tmp_path / "one" / "answers"))
    assert whole["generate_questions_per_s"] > 0
    assert whole["error"] == pytest.approx((whole["error/colour"] + whole["error/pope"]) / 2)
    assert {"pope/f1", "pope/accuracy", "pope/yes_ratio"} <= set(whole)
    lines = [json.loads(x) for x in (tmp_path / "one" / "answers" / "colour.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and {"question_id", "prompt", "answer", "parsed", "score", "question"} <= set(lines[0])
    assert 1 - sum(x["score"] for x in lines) / 8 == pytest.approx(whole["error/colour"])

    root = tmp_path / "two"
    root.mkdir()
    (tmp_path / "artifacts").symlink_to(data["images"].parents[1])  # the fixture's llm/, clip/ and data/
    (root / "data.json").write_text(json.dumps({k: str(v) for k, v in data.items()}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_rank, args=(2, port, str(root), str(root)), nprocs=2, start_method="spawn")
    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
    speed = "generate_questions_per_s"
    assert {k: v for k, v in ranks[0].items() if k != speed} == {k: v for k, v in ranks[1].items() if k != speed} \
        == {k: v for k, v in whole.items() if k != speed}
    for name in ("colour", "pope"):
        assert (root / "answers" / f"{name}.jsonl").read_text() == (tmp_path / "one" / "answers" / f"{name}.jsonl").read_text()

"""Benchmarks scored on generated answers, as the study scores its VLMs.

A benchmark is a JSONL file in LLaVA-1.5's evaluation layout — ``{"question_id", "image", "text",
"answer" | "answers", "options"?}`` per line — and a scorer (workloads/scorers.py). Each rank
answers its share of the questions (every world-th), greedily, in batches, with the KV cache, on
the model's device; the scores are summed there and all-reduced, so ``error/<name>`` (1 − the
mean score) is the same on every rank. The cell's ``error`` is the mean over its benchmarks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .config import BenchmarkConfig, EvalConfig
from .data.chat import IMAGE_MARKER, image_first
from .data.synthetic import Sample, Turn
from .device import module_device, to_device
from .evaluate import EvalTotals
from .scorers import SCORERS


class BenchmarkFormatError(ValueError):
    pass


def load_questions(b: BenchmarkConfig) -> list[dict]:
    path = Path(b.questions)
    out = []
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkFormatError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(q, dict) or "text" not in q or not ("answer" in q or "answers" in q):
                raise BenchmarkFormatError(f"{path}: line {n}: needs 'text' and 'answer' (or the annotators' 'answers')")
            out.append(q)
    if not out:
        raise BenchmarkFormatError(f"{path}: no questions")
    return out


def _sample(q: dict, b: BenchmarkConfig, prompt: str) -> Sample:
    from PIL import Image

    image = None
    if q.get("image"):
        path = Path(b.image_root or Path(b.questions).parent) / q["image"]
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise BenchmarkFormatError(f"benchmark {b.name}: image {path} of question {q.get('question_id')!r} does "
                                       "not exist; set the benchmark's image_root") from None
        # LLaVA's evaluation puts the image first: `<image>\n` + the question as written
        prompt = f"{IMAGE_MARKER}\n{prompt}" if IMAGE_MARKER not in prompt else image_first(prompt)
    return Sample(image, (Turn(prompt, "", b.name),), b.name)


@torch.no_grad()
def generate(model, collate, samples: list[Sample], max_new_tokens: int) -> list[str]:
    """Greedy answers to the samples' first questions: left-padded prompts, the image features
    merged into their placeholders, then the LLM's own generate with its KV cache."""
    device = module_device(model)
    prompts = [collate.prompt(s) for s in samples]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), collate.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    batch = collate(samples)  # pixels and queries, as training prepares them
    ids, mask = to_device((ids, mask), device)
    with_image = batch.image_mask if batch.image_mask is not None else torch.ones(len(samples), dtype=torch.bool)
    pixels, qids, qmask = to_device((batch.pixel_values[with_image], batch.query_ids[with_image],
                                     batch.query_mask[with_image]), device)
    features = (model.encode_images(pixels, qids, qmask) if len(pixels)
                else model.llm.get_input_embeddings().weight.new_zeros((0, model.visual_tokens, 1)))
    embeds = model.merge(ids, features)
    stop = collate.fmt.stop_ids(collate.tok)
    out = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stop, pad_token_id=collate.pad_id, use_cache=True)
    return [collate.tok.decode([t for t in row.tolist() if t not in stop and t != collate.pad_id],
                               skip_special_tokens=True).strip() for row in out]


def run(model, collate, cfg: EvalConfig, rank: int, world: int) -> tuple[EvalTotals, dict[str, float]]:
    """Every benchmark's summed scores (this rank's share, on the model's device) and the
    generation throughput."""
    device = module_device(model)
    totals = EvalTotals(device)
    was_training = model.training
    model.eval()
    t0, answered = time.perf_counter(), 0
    for b in cfg.benchmarks:
        scorer = SCORERS[b.scorer]
        questions = load_questions(b)[rank::world]
        for i in range(0, len(questions), cfg.batch_size):
            chunk = questions[i:i + cfg.batch_size]
            answers = generate(model, collate, [_sample(q, b, scorer.prompt(q)) for q in chunk], cfg.new_tokens(b))
            scores = torch.tensor([scorer.score(a, q) for a, q in zip(answers, chunk)], dtype=torch.float64)
            stats = torch.stack([scores, torch.ones_like(scores), torch.zeros_like(scores), torch.zeros_like(scores)], 1)
            totals.add([b.name] * len(chunk), stats.to(device))
            answered += len(chunk)
    model.train(was_training)
    seconds = time.perf_counter() - t0
    return totals, {"generate_questions_per_s": answered / seconds if seconds > 0 else 0.0}


def metrics(totals: EvalTotals) -> dict[str, float]:
    """``error/<benchmark>`` = 1 − its mean score, and ``error`` their mean (the study's average)."""
    out = {}
    for name, t in totals.totals().items():
        if t["count"]:
            out[f"error/{name}"] = 1.0 - t["correct"] / t["count"]
    if out:
        out["error"] = sum(out.values()) / len(out)
    return out

"""Benchmarks scored on generated answers, as the study scores its VLMs.

A benchmark is a JSONL file — ``{"question_id", "image", "text", "answer" | "answers", "options"?,
…}`` per line, the fields its scorer reads (workloads/scorers/; ``vlmscale convert-benchmark``
writes it from a benchmark's own release) — and a scorer. Each rank answers every world-th
question, greedily, in batches, with the KV cache, on the model's device; the answers are gathered,
so a rule over a group of questions (MME's image pairs, MMBench's rotations) sees all of them
whichever rank answered, and every rank computes the same score. ``error/<name>`` is 1 − the
benchmark's accuracy, its rule's other numbers are ``<name>/<detail>``, and the cell's ``error``
is the mean over its benchmarks. Rank 0 writes every answer (question, prompt, answer, what the
rule read, score) to ``answers/<name>.jsonl`` under the cell's storage, so ``vlmscale rescore``
can score them again without generating.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .benchmark_files import BenchmarkFormatError, benchmark_metrics, load_questions, mean_error, write_answers
from .config import BenchmarkConfig, EvalConfig
from .data.chat import IMAGE_MARKER, image_first
from .data.synthetic import Sample, Turn
from .device import distributed, module_device, to_device
from .scorers import SCORERS


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
                                       "not exist; set the benchmark's image_root", b.questions) from None
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for a cut or foreign file
            raise BenchmarkFormatError(f"benchmark {b.name}: image {path} of question {q.get('question_id')!r} cannot "
                                       f"be decoded ({e}); replace the file", b.questions) from None
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


def _gathered(mine: dict[int, str]) -> dict[int, str]:
    """Every rank's answers, on every rank."""
    if not distributed():
        return mine
    import torch.distributed as dist

    parts: list[dict[int, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    return {i: a for part in parts for i, a in (part or {}).items()}


def run(model, collate, cfg: EvalConfig, rank: int, world: int, answers_dir: str | None = None
        ) -> dict[str, float]:
    """Every benchmark's error and details, the same on every rank, and the generation throughput;
    rank 0 writes the answers under ``answers_dir`` (if given)."""
    was_training = model.training
    model.eval()
    t0, answered, out = time.perf_counter(), 0, {}
    for b in cfg.benchmarks:
        scorer = SCORERS[b.scorer]
        questions = load_questions(b)
        prompts = [scorer.prompt(q, b.prompt_suffix) for q in questions]
        mine = list(range(rank, len(questions), world))
        answers: dict[int, str] = {}
        for i in range(0, len(mine), cfg.batch_size):
            chunk = mine[i:i + cfg.batch_size]
            generated = generate(model, collate, [_sample(questions[j], b, prompts[j]) for j in chunk],
                                 cfg.new_tokens(b))
            answers.update(zip(chunk, generated))
        answered += len(mine)
        everyone = _gathered(answers)
        predictions = [everyone[i] for i in range(len(questions))]
        scored, result = scorer.evaluate(questions, predictions)
        out.update(benchmark_metrics(b.name, result))
        if rank == 0 and answers_dir:
            write_answers(answers_dir, b.name, questions, prompts, predictions, scored)
    model.train(was_training)
    seconds = time.perf_counter() - t0
    out["error"] = mean_error(out, [b.name for b in cfg.benchmarks])
    out["generate_questions_per_s"] = answered / seconds if seconds > 0 else 0.0
    return out

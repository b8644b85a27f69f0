"""Held-out evaluation: error = 1 − exact-match accuracy of the greedily decoded answer.

Greedy decoding reproduces the reference answer (and its eos) exactly iff, with the reference
as teacher-forced prefix, the argmax at every answer position equals the reference token: up to
the first mismatch the two decodes see the same prefix, and at the first mismatch greedy decoding
has already diverged. So one teacher-forced forward pass gives the greedy exact-match of a whole
batch; ``greedy_decode`` is the literal decoder, which the tests use to check that equivalence.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data.batch import IGNORE, Batch


@dataclass
class EvalTotals:
    """Summable counts, so shards from several workers can be all-reduced."""

    correct: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    count: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    loss_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, key: str, correct: float, count: float, loss_sum: float, tokens: float) -> None:
        self.correct[key] += correct
        self.count[key] += count
        self.loss_sum[key] += loss_sum
        self.tokens[key] += tokens

    def keys(self) -> list[str]:
        return sorted(self.count)

    def all_reduce(self, keys: list[str]) -> None:
        """Sum over workers; ``keys`` must be the same list on every rank."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        t = torch.tensor([[self.correct[k], self.count[k], self.loss_sum[k], self.tokens[k]] for k in keys],
                         dtype=torch.float64)
        dist.all_reduce(t)
        for k, row in zip(keys, t.tolist()):
            self.correct[k], self.count[k], self.loss_sum[k], self.tokens[k] = row

    def metrics(self) -> dict[str, float]:
        """``error/<key>`` and ``eval_loss/<key>`` per key, plus the unweighted mean over tasks."""
        out: dict[str, float] = {}
        for k in self.keys():
            if self.count[k]:
                out[f"error/{k}"] = 1.0 - self.correct[k] / self.count[k]
                out[f"eval_loss/{k}"] = self.loss_sum[k] / max(self.tokens[k], 1.0)
        tasks = [k for k in self.keys() if "/" not in k and self.count[k]]
        if tasks:
            out["error"] = sum(out[f"error/{t}"] for t in tasks) / len(tasks)
            out["eval_loss"] = sum(out[f"eval_loss/{t}"] for t in tasks) / len(tasks)
        return out


def score_batch(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample: exact match (bool), summed answer-token loss, answer-token count."""
    inputs = batch.model_inputs()
    labels = inputs.pop("labels")
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    answer = target != IGNORE
    hits = (logits.argmax(-1) == target) | ~answer
    losses = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none") * answer
    return hits.all(dim=1), losses.sum(dim=1), answer.sum(dim=1)


@torch.no_grad()
def evaluate(model, batches, totals: EvalTotals | None = None) -> EvalTotals:
    """Accumulate exact-match and answer loss per task and per ``task/family``."""
    totals = totals or EvalTotals()
    was_training = model.training
    model.eval()
    for batch in batches:
        exact, loss, tokens = score_batch(model, batch)
        for i, (task, family) in enumerate(zip(batch.tasks, batch.families)):
            for key in (task, f"{task}/{family}"):
                totals.add(key, float(exact[i]), 1.0, float(loss[i]), float(tokens[i]))
    model.train(was_training)
    return totals


@torch.no_grad()
def greedy_decode(model, batch: Batch, index: int, eos_id: int, max_new_tokens: int = 8) -> list[int]:
    """Literal greedy decoding of sample ``index`` from its prompt (no teacher forcing)."""
    labels = batch.labels[index]
    prompt_len = int((labels == IGNORE).logical_and(batch.attention_mask[index] == 1).sum())
    ids = batch.input_ids[index, :prompt_len].unsqueeze(0)
    pixels = batch.pixel_values[index: index + 1]
    qmask = batch.query_mask[index: index + 1]
    qids = batch.query_ids[index: index + 1]
    features = model.encode_images(pixels, qids, qmask)
    out: list[int] = []
    for _ in range(max_new_tokens):
        embeds = model.merge(ids, features)
        next_id = int(model.llm(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax())
        out.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
        if next_id == eos_id:
            break
    return out

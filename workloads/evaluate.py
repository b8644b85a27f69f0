"""Held-out evaluation: error = 1 − exact-match accuracy of the greedily decoded answer.

Greedy decoding reproduces the reference answer (and its eos) exactly iff, with the reference
as teacher-forced prefix, the argmax at every answer position equals the reference token: up to
the first mismatch the two decodes see the same prefix, and at the first mismatch greedy decoding
has already diverged. So one teacher-forced forward pass gives the greedy exact-match of a whole
batch; ``greedy_decode`` is the literal decoder, which the tests use to check that equivalence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.batch import IGNORE, Batch
from .device import all_reduce_sum, device_tensor, module_device, to_device

STATS = ("correct", "count", "loss_sum", "tokens")


class EvalTotals:
    """Summable counts per key (a task, or ``task/family``), kept on the model's device so
    evaluation never waits on the host and shards from several workers can be all-reduced."""

    def __init__(self, device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self._index: dict[str, int] = {}
        self._sums = torch.zeros((0, len(STATS)), dtype=torch.float64, device=self.device)

    def keys(self) -> list[str]:
        return sorted(self._index)

    def _rows(self, keys: list[str]) -> list[int]:
        new = [k for k in dict.fromkeys(keys) if k not in self._index]
        if new:
            for k in new:
                self._index[k] = len(self._index)
            pad = torch.zeros((len(new), len(STATS)), dtype=torch.float64, device=self.device)
            self._sums = torch.cat([self._sums, pad])
        return [self._index[k] for k in keys]

    def add(self, keys: list[str], stats: torch.Tensor) -> None:
        """Add ``stats`` [B, 4] (correct, count, loss_sum, tokens per sample) to the rows ``keys`` [B]."""
        rows = device_tensor(self._rows(keys), self.device, dtype=torch.long)
        self._sums.index_add_(0, rows, stats.to(torch.float64))

    def all_reduce(self, keys: list[str]) -> None:
        """Sum over workers; ``keys`` must be the same list on every rank."""
        rows = self._rows(keys)
        self._sums = self._sums[rows]
        self._index = {k: i for i, k in enumerate(keys)}
        self._sums = all_reduce_sum(self._sums.contiguous(), self.device)

    def totals(self) -> dict[str, dict[str, float]]:
        values = self._sums.tolist()  # the one host transfer
        return {k: dict(zip(STATS, values[i])) for k, i in self._index.items()}

    def metrics(self) -> dict[str, float]:
        """``error/<key>`` and ``eval_loss/<key>`` per key, plus the unweighted mean over tasks."""
        out: dict[str, float] = {}
        totals = self.totals()
        for k in sorted(totals):
            t = totals[k]
            if t["count"]:
                out[f"error/{k}"] = 1.0 - t["correct"] / t["count"]
                out[f"eval_loss/{k}"] = t["loss_sum"] / max(t["tokens"], 1.0)
        tasks = [k for k in sorted(totals) if "/" not in k and totals[k]["count"]]
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
    """Accumulate exact-match and answer loss per task and per ``task/family``.

    Batches come from the host; each is moved to the model's device here.
    """
    device = module_device(model)
    totals = totals or EvalTotals(device)
    was_training = model.training
    model.eval()
    for batch in batches:
        exact, loss, tokens = score_batch(model, to_device(batch, device))
        stats = torch.stack([exact.double(), torch.ones_like(loss, dtype=torch.float64), loss.double(),
                             tokens.double()], dim=1)
        totals.add(list(batch.tasks), stats)
        totals.add([f"{t}/{f}" for t, f in zip(batch.tasks, batch.families)], stats)
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
    ids, pixels, qmask, qids = to_device((ids, pixels, qmask, qids), module_device(model))
    features = model.encode_images(pixels, qids, qmask)
    out: list[int] = []
    for _ in range(max_new_tokens):
        embeds = model.merge(ids, features)
        next_id = int(model.llm(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax())
        out.append(next_id)
        ids = torch.cat([ids, ids.new_tensor([[next_id]])], dim=1)
        if next_id == eos_id:
            break
    return out

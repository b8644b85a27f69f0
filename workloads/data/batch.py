"""Samples → model inputs.

Sequence layout (right-padded)::

    [bos] USER: <image>×V question₁ ASSISTANT: answer₁ <eos> [USER: question₂ ASSISTANT: answer₂ <eos> …] [pad…]

Labels are −100 everywhere but the answers and their eos, so the loss and the exact-match metric
look only at answers. Several turns per image (training only) give dense supervision: every
image trains several answers for little more compute. ``query_ids`` is the first question
(QueCC's query); evaluation uses one question per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .synthetic import Sample

IGNORE = -100


@dataclass(frozen=True)
class ImageTransform:
    """uint8 H×W×3 → float [3, S, S], resized if needed and normalised per channel."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if image.shape[0] != self.size or image.shape[1] != self.size:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).convert("RGB").resize((self.size, self.size), Image.BICUBIC))
        x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    tasks: tuple[str, ...]
    families: tuple[str, ...]
    image_token_id: int

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "labels": self.labels,
            "pixel_values": self.pixel_values,
            "query_ids": self.query_ids,
            "query_mask": self.query_mask,
        }

    @property
    def text_tokens(self) -> torch.Tensor:
        """Per sample, the prompt's text tokens (Q of the cost model): non-pad, non-answer and not an
        ``<image>`` placeholder — those carry the V visual tokens, which the cost model counts apart."""
        prompt = (self.attention_mask == 1) & (self.labels == IGNORE)
        return (prompt & (self.input_ids != self.image_token_id)).sum(1)


class Collator:
    def __init__(self, tokenizer, visual_tokens: int, transform: ImageTransform,
                 user_prefix: str = "USER:", assistant_prefix: str = "ASSISTANT:"):
        self.tok, self.v, self.transform = tokenizer, visual_tokens, transform
        self.image_id = tokenizer.convert_tokens_to_ids("<image>")
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.user = self._encode(user_prefix)
        self.assistant = self._encode(assistant_prefix)

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, sample: Sample) -> tuple[list[int], list[int], list[int]]:
        ids: list[int] = self.bos + self.user + [self.image_id] * self.v
        labels: list[int] = [IGNORE] * len(ids)
        for i, turn in enumerate(sample.turns):
            prompt = (self.user if i else []) + self._encode(turn.question) + self.assistant
            answer = self._encode(turn.answer) + [self.eos_id]
            ids += prompt + answer
            labels += [IGNORE] * len(prompt) + answer
        return ids, labels, self._encode(sample.question)

    def __call__(self, samples: list[Sample]) -> Batch:
        encoded = [self.encode(s) for s in samples]
        length = max(len(ids) for ids, _, _ in encoded)
        qlength = max(max(len(q) for _, _, q in encoded), 1)
        n = len(samples)
        input_ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        labels = torch.full((n, length), IGNORE, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        query_ids = torch.full((n, qlength), self.pad_id, dtype=torch.long)
        query_mask = torch.zeros((n, qlength), dtype=torch.long)
        for i, (ids, lab, q) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
            q = q or [self.pad_id]
            query_ids[i, : len(q)] = torch.tensor(q)
            query_mask[i, : len(q)] = 1
        pixels = torch.stack([self.transform(s.image) for s in samples])
        return Batch(input_ids, mask, labels, pixels, query_ids, query_mask,
                     tuple(s.task for s in samples), tuple(s.family for s in samples), self.image_id)

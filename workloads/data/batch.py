"""Samples → model inputs.

A conversation format (workloads/data/chat.py) lays out the turns; for the synthetic tasks::

    [bos] USER: <image>×V question₁ ASSISTANT: answer₁ <eos> [USER: question₂ ASSISTANT: answer₂ <eos> …] [pad…]

Labels are −100 everywhere but the answers (and what closes them), so the loss and the
exact-match metric look only at answers. Several turns per image (training only) give dense
supervision: every image trains several answers for little more compute. ``query_ids`` is the
first question (QueCC's query). A text-only sample has no placeholders and ``image_mask`` False:
its (blank) pixels are never encoded. Sequences longer than ``max_length`` are cut after it, never
inside the image's placeholders.

Images are preprocessed by the vision tower's own image processor (``ProcessorTransform``: its
resize, crop and normalisation, after padding to a square with its mean colour as LLaVA-1.5's
``image_aspect_ratio: pad`` does), or, for the tiny presets, by ``ImageTransform``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .chat import IMAGE_MARKER, ConversationFormat, Plain
from .synthetic import Sample

IGNORE = -100
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@dataclass(frozen=True)
class ImageTransform:
    """uint8 H×W×3 → float [3, S, S], resized if needed and normalised per channel."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if image.shape[0] != self.size or image.shape[1] != self.size:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).convert("RGB").resize((self.size, self.size),
                                                                                         Image.Resampling.BICUBIC))
        x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def transform_for(vision: str, image_size: int, aspect_ratio: str = "pad"):
    """The tower's own image processor when it has one (a CLIP or SigLIP checkpoint, local or
    from the hub), else the plain resize-and-normalise of the tiny towers (presets, and the
    pretrained tiny tower saved without one)."""
    from pathlib import Path

    from ..presets import is_vision_preset
    from ..storage import localize

    if is_vision_preset(vision):
        return ImageTransform(image_size)
    local = Path(localize(vision))
    if local.is_dir() and not any((local / f).is_file() for f in PROCESSOR_FILES):
        return ImageTransform(image_size)
    from transformers import AutoImageProcessor

    return ProcessorTransform(AutoImageProcessor.from_pretrained(str(local) if local.is_dir() else vision),
                              pad=aspect_ratio == "pad")


class ProcessorTransform:
    """uint8 H×W×3 → the vision tower's pixel values, by its own image processor; ``pad``: first
    expanded to a square filled with the processor's mean colour (LLaVA-1.5's ``pad``)."""

    def __init__(self, processor, pad: bool):
        self.processor, self.pad = processor, pad
        self.fill = tuple(int(round(255 * m)) for m in getattr(processor, "image_mean", (0.5, 0.5, 0.5)))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from PIL import Image

        im = Image.fromarray(image).convert("RGB")
        if self.pad and im.width != im.height:
            side = max(im.width, im.height)
            square = Image.new("RGB", (side, side), self.fill)
            square.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
            im = square
        return torch.as_tensor(np.asarray(self.processor(images=im, return_tensors="np")["pixel_values"][0]))


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
    image_mask: torch.Tensor | None = None  # [B] bool: the samples with an image (None: all)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        out = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "labels": self.labels,
            "pixel_values": self.pixel_values,
            "query_ids": self.query_ids,
            "query_mask": self.query_mask,
        }
        if self.image_mask is not None:
            out["image_mask"] = self.image_mask
        return out

    @property
    def text_tokens(self) -> torch.Tensor:
        """Per sample, the prompt's text tokens (Q of the cost model): non-pad, non-answer and not an
        ``<image>`` placeholder — those carry the V visual tokens, which the cost model counts apart."""
        prompt = (self.attention_mask == 1) & (self.labels == IGNORE)
        return (prompt & (self.input_ids != self.image_token_id)).sum(1)


class Collator:
    def __init__(self, tokenizer, visual_tokens: int, transform, fmt: ConversationFormat | None = None,
                 max_length: int | None = None):
        self.tok, self.v, self.transform = tokenizer, visual_tokens, transform
        self.fmt = fmt or Plain()
        self.max_length = max_length
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_MARKER)
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and self.fmt.bos else []

    def _encode(self, text: str) -> list[int]:
        """Token ids of ``text``, each ``<image>`` placeholder repeated V times."""
        ids = self.tok(text, add_special_tokens=False)["input_ids"] if text else []
        if self.image_id not in ids:
            return ids
        out: list[int] = []
        for i in ids:
            out += [i] * self.v if i == self.image_id else [i]
        return out

    def encode(self, sample: Sample) -> tuple[list[int], list[int], list[int]]:
        ids: list[int] = list(self.bos)
        labels: list[int] = [IGNORE] * len(ids)
        for text, answer in self.fmt.segments(sample, self.tok):
            piece = self._encode(text)
            if answer and self.fmt.eos_after_answer:
                piece = piece + [self.eos_id]
            ids += piece
            labels += piece if answer else [IGNORE] * len(piece)
        if self.max_length is not None and len(ids) > self.max_length:
            keep = max(self.max_length, max((i + 1 for i, t in enumerate(ids) if t == self.image_id), default=0))
            ids, labels = ids[:keep], labels[:keep]
        return ids, labels, self._query(sample)

    def _query(self, sample: Sample) -> list[int]:
        """The question's tokens for a query-conditioned compressor: the format's text of it, with
        the tokenizer's special tokens where the reference tokenizes it so (a Llama tokenizer's bos)."""
        text = self.fmt.query(sample)
        if not self.fmt.query_special_tokens:
            return self._encode(text)
        return self.tok(text)["input_ids"] if text else []

    def prompt(self, sample: Sample) -> list[int]:
        """The tokens before the first answer: what generation starts from."""
        ids: list[int] = list(self.bos)
        for text, answer in self.fmt.segments(sample, self.tok):
            if answer:
                break
            ids += self._encode(text)
        return ids

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
        with_image = [s.image is not None for s in samples]
        pixels = [self.transform(s.image) for s in samples if s.image is not None]
        if all(with_image):
            pixel_values, image_mask = torch.stack(pixels), None
        else:  # text-only samples: a blank image each, never encoded (image_mask)
            blank = torch.zeros_like(pixels[0]) if pixels else self.transform(np.zeros((8, 8, 3), np.uint8)) * 0
            it = iter(pixels)
            pixel_values = torch.stack([next(it) if has else blank for has in with_image])
            image_mask = torch.tensor(with_image)
        return Batch(input_ids, mask, labels, pixel_values, query_ids, query_mask,
                     tuple(s.task for s in samples), tuple(s.family for s in samples), self.image_id, image_mask)

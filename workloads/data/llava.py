"""LLaVA-format data as researchers have it: a JSON list or JSONL of records
``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, …]}``.

A record is one sample: the whole conversation, trained with the loss on the assistant turns
(the collator's conversation format lays it out), its image at the front of the first human turn
that marks it, as LLaVA's trainer puts it, and records without ``image`` — the 665K mix's ShareGPT
part — as text-only conversations.

A file is read through its index (:mod:`.llava_index`: good records by byte offset, bad ones by
line); a sample is read back by seeking to its record, its image loaded lazily with Pillow. A bad
record — in the index, or an image that is missing or cannot be decoded — ends the cell naming the
file, the line and the field (``data.on_bad_record: fail``), or is left out and counted (``skip``:
the next good record takes its place, the same one on every run).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .chat import image_first
from .llava_index import IMAGE_MARKER, LlavaFormatError, RecordIndex, index  # noqa: F401 — re-exported
from .synthetic import Sample, Turn

LOG = logging.getLogger("vlmscale.data")  # each record left out under data.on_bad_record: skip

# Raised when how a record becomes a conversation changes (a cell's identity carries it, so a result
# of the old layout never counts as one of the new). 1: the marker kept where the record had it, and
# every turn stripped; 2: as LLaVA lays it out (:func:`conversation`).
LAYOUT_REVISION = 2


def conversation(record: dict) -> tuple[Turn, ...]:
    """The record's human→gpt turns as LLaVA's trainer lays them out (preprocess_multimodal): the
    image at the front of the first turn that marks it, as ``<image>\n`` before that turn's stripped
    text; the other turns as written. Where LLaVA would break — a second marker, a marker in an
    answer, an image record without a marker — the extra markers are dropped and a missing one is
    put at the front of the first question."""
    turns = record["conversations"]
    questions = [turns[j]["value"] for j in range(0, len(turns) - 1, 2)]
    answers = [turns[j + 1]["value"].replace(IMAGE_MARKER, "") for j in range(0, len(turns) - 1, 2)]
    has_image = record.get("image") is not None
    marked = next((k for k, q in enumerate(questions) if IMAGE_MARKER in q), None) if has_image else None
    for k, q in enumerate(questions):
        if k == marked:
            questions[k] = image_first(q)
        elif IMAGE_MARKER in q:
            questions[k] = q.replace(IMAGE_MARKER, "").strip()
    if has_image and marked is None:
        questions[0] = image_first(questions[0])
    return tuple(Turn(q, a, "llava") for q, a in zip(questions, answers))


class LlavaDataset:
    """Random access to a LLaVA-format file's good records; ``limit``: the first that many
    (eval_size). ``on_bad_record``: ``fail`` — a bad record in the file, or an image that cannot be
    read, is a :class:`LlavaFormatError` naming the file, the line and the field; ``skip`` — left out,
    counted in ``skipped``."""

    def __init__(self, path: str | Path, image_root: str | Path | None = None, task: str = "llava",
                 limit: int | None = None, on_bad_record: str = "fail"):
        self.path = Path(path)
        self.index = index(self.path)
        self.root = Path(image_root) if image_root else self.path.parent
        self.task, self.policy = task, on_bad_record
        if self.index.bad and on_bad_record == "fail":
            first = self.index.problems[0]
            raise LlavaFormatError(f"{self.path}: line {first.line}: {first.text}"
                                   f"{f' (and {self.index.bad - 1} more bad records)' if self.index.bad > 1 else ''}"
                                   "; `vlmscale validate` lists them, data.on_bad_record: skip trains without them",
                                   self.path)
        if not len(self.index):
            raise LlavaFormatError(f"{self.path}: no good records ({self.index.bad} bad)", self.path)
        self.size = len(self.index) if limit is None else min(limit, len(self.index))
        self.skipped = self.index.bad  # records left out: the index's bad ones, and images found bad since
        for p in self.index.problems:
            LOG.warning("skipped %s: line %d: %s", self.path, p.line, p.text)
        if self.index.bad > len(self.index.problems):
            LOG.warning("skipped %d more bad records of %s", self.index.bad - len(self.index.problems), self.path)
        self._unreadable: set[int] = set()
        self._file: BinaryIO | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.size

    def line(self, i: int) -> int:
        return int(self.index.lines[i])

    def record(self, i: int) -> dict:
        if not 0 <= i < self.size:
            raise IndexError(i)
        if self._file is None or self._pid != os.getpid():  # a handle per process (workers fork)
            self._file, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115 — kept open for the dataset's life
        f = self._file
        f.seek(int(self.index.offsets[i]))
        return json.loads(f.read(int(self.index.lengths[i])))

    def __getitem__(self, i: int) -> Sample:
        for k in range(self.size):  # with skip, the next readable record takes a bad one's place
            j = (i + k) % self.size
            if j in self._unreadable:
                continue
            record = self.record(j)
            try:
                image = self._image(record, j)
            except LlavaFormatError as e:
                if self.policy != "skip":
                    raise
                LOG.warning("skipped %s", e)
                self._unreadable.add(j)
                self.skipped += 1
                continue
            return Sample(image, conversation(record), self.task)
        raise LlavaFormatError(f"{self.path}: no record whose image can be read", self.path)

    def _image(self, record: dict, i: int):
        from PIL import Image, UnidentifiedImageError

        if record.get("image") is None:
            return None
        image_path = self.root / record["image"]
        where = f"{self.path}: line {self.line(i)}: image"
        try:
            with Image.open(image_path) as im:
                return np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise LlavaFormatError(f"{where}: {image_path} does not exist", self.path) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise LlavaFormatError(f"{where}: {image_path} cannot be decoded ({e})", self.path) from None

    def __getstate__(self):  # a dataset travels to workers without its open file
        return {**self.__dict__, "_file": None, "_pid": None}

"""LLaVA-format data as researchers have it: a JSON list or JSONL of records
``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, …]}``.

A record is one sample: the whole conversation, trained with the loss on the assistant turns
(the collator's conversation format lays it out), its image at the front of the first human turn
that marks it, as LLaVA's trainer puts it, and records without ``image`` — the 665K mix's ShareGPT
part — as text-only conversations.

A 665K-record file is indexed, not held in memory as Python objects: one pass records each
record's byte offset and length (and whether it has an image) in numpy arrays, cached beside
nothing the user owns (``$VLMSCALE_CACHE/llava-index``, keyed by the file's path, size and
modification time; ``numpy.load`` with ``allow_pickle=False``); a sample is read back by seeking
to its record. Images load lazily with Pillow.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chat import image_first
from .synthetic import Sample, Turn

IMAGE_MARKER = "<image>"
CHUNK = 16 << 20  # bytes decoded at a time while indexing


class LlavaFormatError(ValueError):
    pass


@dataclass(frozen=True)
class RecordIndex:
    offsets: np.ndarray  # int64: where each record starts in the file
    lengths: np.ndarray  # int64: its length in bytes
    has_image: np.ndarray  # bool
    words: np.ndarray  # int64: whitespace-separated words over its turns (LLaVA's length for grouping)

    def __len__(self) -> int:
        return len(self.offsets)


def _check(record, where: str) -> tuple[bool, int]:
    """Validate one record's shape; (whether it has an image, its words)."""
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise LlavaFormatError(f"{where}: needs 'conversations' (a list of {{from, value}} turns)")
    turns = record["conversations"]
    if len(turns) < 2:
        raise LlavaFormatError(f"{where}: needs at least one human turn and one gpt turn")
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise LlavaFormatError(f"{where}: turn {j} needs 'from' and a text 'value'")
        if turn.get("from") != ("human" if j % 2 == 0 else "gpt"):
            raise LlavaFormatError(f"{where}: turn {j} must be from {'human' if j % 2 == 0 else 'gpt'} "
                                   "(turns alternate human, gpt)")
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        raise LlavaFormatError(f"{where}: 'image' must be a path relative to the image root")
    return image is not None, sum(len(turn["value"].split()) for turn in turns)


def _index_jsonl(path: Path) -> RecordIndex:
    offsets, lengths, images, words = [], [], [], []
    with open(path, "rb") as f:
        pos = 0
        for n, line in enumerate(f, start=1):
            stripped = line.strip()
            if stripped:
                try:
                    record = json.loads(stripped)
                except json.JSONDecodeError as e:
                    raise LlavaFormatError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
                has, n_words = _check(record, f"{path}: line {n}")
                images.append(has)
                words.append(n_words)
                offsets.append(pos + (len(line) - len(line.lstrip())))
                lengths.append(len(stripped))
            pos += len(line)
    return RecordIndex(np.array(offsets, np.int64), np.array(lengths, np.int64), np.array(images, bool),
                       np.array(words, np.int64))


def _index_json_list(path: Path) -> RecordIndex:
    """One streaming pass over a JSON list: each element decoded once (in C) and forgotten."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    offsets, lengths, images, words = [], [], [], []
    text, base = "", 0  # text[0] sits at byte `base` of the file
    started = ended = False
    with open(path, "rb") as f:
        eof = False
        while not ended:
            if not eof:
                chunk = f.read(CHUNK)
                eof = not chunk
                text += utf8.decode(chunk, final=eof)
            i, cursor_c, cursor_b = 0, 0, base  # cursor: a char index of text and its byte offset
            while True:
                while i < len(text) and text[i] in " \t\r\n,":
                    i += 1
                if i == len(text):
                    break
                if not started:
                    if text[i] != "[":
                        raise LlavaFormatError(f"{path}: expected a JSON list of records (or use .jsonl)")
                    started, i = True, i + 1
                    continue
                if text[i] == "]":
                    ended = True
                    break
                try:
                    record, end = decoder.raw_decode(text, i)
                except json.JSONDecodeError as e:
                    if eof:
                        raise LlavaFormatError(f"{path}: record {len(offsets)}: not valid JSON ({e.msg})") from None
                    break  # the record runs past this chunk: read more
                has, n_words = _check(record, f"{path}: record {len(offsets)}")
                images.append(has)
                words.append(n_words)
                cursor_b += len(text[cursor_c:i].encode("utf-8"))
                size = len(text[i:end].encode("utf-8"))
                offsets.append(cursor_b)
                lengths.append(size)
                cursor_c, cursor_b, i = end, cursor_b + size, end
            base = cursor_b + len(text[cursor_c:i].encode("utf-8"))
            text = text[i:]
            if eof and not ended:
                if text.strip():
                    raise LlavaFormatError(f"{path}: the JSON list is not closed")
                raise LlavaFormatError(f"{path}: expected a JSON list of records (or use .jsonl)")
    return RecordIndex(np.array(offsets, np.int64), np.array(lengths, np.int64), np.array(images, bool),
                       np.array(words, np.int64))


def _cache_file(path: Path) -> Path:
    from ..storage import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    return cache_dir() / "llava-index" / f"{key}.npz"


def index(path: str | Path) -> RecordIndex:
    """The file's record index, built once and cached (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise LlavaFormatError(f"{path}: no such LLaVA-format file")
    cached = _cache_file(path)
    try:
        with np.load(cached, allow_pickle=False) as z:
            return RecordIndex(z["offsets"], z["lengths"], z["has_image"], z["words"])
    except (OSError, KeyError, ValueError):
        pass
    built = _index_jsonl(path) if path.suffix == ".jsonl" else _index_json_list(path)
    if not len(built):
        raise LlavaFormatError(f"{path}: no records")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.npz")
    np.savez(tmp, offsets=built.offsets, lengths=built.lengths, has_image=built.has_image, words=built.words)
    os.replace(tmp, cached)
    return built


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
    """Random access to a LLaVA-format file's records; ``limit``: the first that many (eval_size)."""

    def __init__(self, path: str | Path, image_root: str | Path | None = None, task: str = "llava",
                 limit: int | None = None):
        self.path = Path(path)
        self.index = index(self.path)
        self.root = Path(image_root) if image_root else self.path.parent
        self.task = task
        self.size = len(self.index) if limit is None else min(limit, len(self.index))
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return self.size

    def record(self, i: int) -> dict:
        if not 0 <= i < self.size:
            raise IndexError(i)
        if self._file is None or self._pid != os.getpid():  # a handle per process (workers fork)
            self._file, self._pid = open(self.path, "rb"), os.getpid()
        self._file.seek(int(self.index.offsets[i]))
        return json.loads(self._file.read(int(self.index.lengths[i])))

    def __getitem__(self, i: int) -> Sample:
        from PIL import Image

        record = self.record(i)
        image = None
        if record.get("image") is not None:
            image_path = self.root / record["image"]
            try:
                with Image.open(image_path) as im:
                    image = np.asarray(im.convert("RGB"))
            except FileNotFoundError:
                raise LlavaFormatError(f"image {image_path} (record {i} of {self.path}) does not exist") from None
        return Sample(image, conversation(record), self.task)

    def __getstate__(self):  # a dataset travels to workers without its open file
        return {**self.__dict__, "_file": None, "_pid": None}

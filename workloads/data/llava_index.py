"""A LLaVA-format file's index: one streaming pass records each good record's byte offset, length,
line, words and whether it has an image (numpy arrays, not Python objects: a 665K-record file), and
every bad record's line and what is wrong with it — a line that is not JSON or not UTF-8, a
conversation that does not alternate human/gpt from the human, a turn without text, a second
``<image>`` marker. Cached under ``$VLMSCALE_CACHE/llava-index`` (keyed by the file's path, size and
modification time; ``numpy.load`` with ``allow_pickle=False``), so ``validate`` and ``run`` read a
file once between them.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..failures import DataError

IMAGE_MARKER = "<image>"
CHUNK = 16 << 20  # bytes decoded at a time while indexing
KEPT = 10_000  # bad records whose problem is kept (every one is counted)
VERSION = 3  # of the cached index's layout


class LlavaFormatError(DataError):
    """A LLaVA-format file that cannot be used as it is; ``path`` is the file."""


@dataclass(frozen=True)
class Problem:
    line: int  # from 1
    kind: str  # json, encoding, structure, markers (validate caps each kind)
    text: str  # "field: what is wrong"


@dataclass(frozen=True)
class RecordIndex:
    offsets: np.ndarray  # int64: where each good record starts in the file
    lengths: np.ndarray  # int64: its length in bytes
    has_image: np.ndarray  # bool
    words: np.ndarray  # int64: whitespace-separated words over its turns (LLaVA's length for grouping)
    lines: np.ndarray  # int64: the line it starts on (from 1)
    names: np.ndarray  # uint8: the good records' image paths, UTF-8, one after another ("" without one)
    name_starts: np.ndarray  # int64: where record i's path starts in ``names`` (one more entry: the end)
    problems: tuple[Problem, ...] = ()  # the bad records (the first KEPT)
    bad: int = 0  # every bad record

    def __len__(self) -> int:
        return len(self.offsets)

    def image(self, i: int) -> str | None:
        """Good record i's image path as the record gives it, or None."""
        if not self.has_image[i]:
            return None
        return self.names[self.name_starts[i]:self.name_starts[i + 1]].tobytes().decode("utf-8")


def record_problems(record) -> list[tuple[str, str]]:
    """What keeps ``record`` from being trained as LLaVA lays it out: (kind, ``field: why``)."""
    if not isinstance(record, dict):
        return [("structure", "not a JSON object (a record is {id, image?, conversations})")]
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return [("structure", "conversations: missing (a list of {from, value} turns)")]
    if not turns:
        return [("structure", "conversations: empty")]
    out = []
    for j, turn in enumerate(turns):
        where = f"conversations[{j}]"
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            out.append(("structure", f"{where}.value: missing or not text"))
            continue
        expected = "human" if j % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            why = ("a conversation starts with the human's turn" if j == 0 else
                   "turns alternate human, gpt")
            out.append(("structure", f"{where}.from: {turn.get('from')!r} where {expected!r} belongs ({why})"))
    if not out and len(turns) % 2:
        out.append(("structure", f"conversations[{len(turns) - 1}]: the human's last turn has no answer"))
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        out.append(("structure", "image: not a path (relative to the image root)"))
    if out:
        return out
    marked = [(j, t["value"].count(IMAGE_MARKER)) for j, t in enumerate(turns) if IMAGE_MARKER in t["value"]]
    if marked and image is None:
        out.append(("markers", f"conversations[{marked[0][0]}].value: an {IMAGE_MARKER} marker in a record "
                               "without an image"))
    elif sum(n for _, n in marked) > 1:
        out.append(("markers", f"conversations[{marked[-1][0]}].value: {sum(n for _, n in marked)} {IMAGE_MARKER} "
                               "markers for one image (LLaVA places one)"))
    elif marked and marked[0][0] % 2:
        out.append(("markers", f"conversations[{marked[0][0]}].value: an {IMAGE_MARKER} marker in an answer"))
    return out


class _Builder:
    def __init__(self):
        self.offsets, self.lengths, self.images, self.words, self.lines = [], [], [], [], []
        self.names: list[bytes] = []
        self.problems: list[Problem] = []
        self.bad = 0

    def add(self, record, line: int, offset: int, length: int) -> None:
        found = record_problems(record)
        if found:
            self.problem(line, *found[0])
            return
        self.offsets.append(offset)
        self.lengths.append(length)
        self.images.append(record.get("image") is not None)
        self.names.append((record.get("image") or "").encode("utf-8"))
        self.words.append(sum(len(t["value"].split()) for t in record["conversations"]))
        self.lines.append(line)

    def problem(self, line: int, kind: str, text: str) -> None:
        self.bad += 1
        if len(self.problems) < KEPT:
            self.problems.append(Problem(line, kind, text))

    def index(self) -> RecordIndex:
        starts = np.zeros(len(self.names) + 1, np.int64)
        np.cumsum([len(n) for n in self.names], out=starts[1:])
        return RecordIndex(np.array(self.offsets, np.int64), np.array(self.lengths, np.int64),
                           np.array(self.images, bool), np.array(self.words, np.int64),
                           np.array(self.lines, np.int64), np.frombuffer(b"".join(self.names), np.uint8), starts,
                           tuple(self.problems), self.bad)


def _index_jsonl(path: Path) -> RecordIndex:
    built = _Builder()
    with open(path, "rb") as f:
        pos = 0
        for n, line in enumerate(f, start=1):
            stripped = line.strip()
            if stripped:
                try:
                    record = json.loads(stripped.decode("utf-8"))
                except UnicodeDecodeError as e:
                    built.problem(n, "encoding", f"not UTF-8 (byte {e.start + 1} of the line)")
                except json.JSONDecodeError as e:
                    built.problem(n, "json", f"not valid JSON ({e.msg}, column {e.colno})")
                else:
                    built.add(record, n, pos + (len(line) - len(line.lstrip())), len(stripped))
            pos += len(line)
    return built.index()


def _line_of_byte(path: Path, byte: int) -> int:
    with open(path, "rb") as f:
        return f.read(byte).count(b"\n") + 1


def _index_json_list(path: Path) -> RecordIndex:
    """One streaming pass over a JSON list: each element decoded once (in C) and forgotten."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    built = _Builder()
    text, base, line = "", 0, 1  # text[0] sits at byte `base` of the file, on line `line`
    started = ended = False
    read = 0
    with open(path, "rb") as f:
        eof = False
        while not ended:
            if not eof:
                chunk = f.read(CHUNK)
                eof = not chunk
                try:
                    text += utf8.decode(chunk, final=eof)
                except UnicodeDecodeError as e:
                    at = read + max(e.start, 0)
                    raise LlavaFormatError(f"{path}: line {_line_of_byte(path, at)}: not UTF-8 (byte {at + 1} of "
                                           "the file)", path) from None
                read += len(chunk)
            i, cursor_c, cursor_b, counted = 0, 0, base, 0  # cursor: a char index of text and its byte offset
            while True:
                while i < len(text) and text[i] in " \t\r\n,":
                    i += 1
                if i == len(text):
                    break
                line += text.count("\n", counted, i)
                counted = i
                if not started:
                    if text[i] != "[":
                        raise LlavaFormatError(f"{path}: expected a JSON list of records (or use .jsonl)", path)
                    started, i = True, i + 1
                    continue
                if text[i] == "]":
                    ended = True
                    break
                try:
                    record, end = decoder.raw_decode(text, i)
                except json.JSONDecodeError as e:
                    if eof:
                        raise LlavaFormatError(f"{path}: line {line}: not valid JSON ({e.msg}); a JSON list cannot "
                                               "be read past a broken record", path) from None
                    break  # the record runs past this chunk: read more
                cursor_b += len(text[cursor_c:i].encode("utf-8"))
                size = len(text[i:end].encode("utf-8"))
                built.add(record, line, cursor_b, size)
                cursor_c, cursor_b, i = end, cursor_b + size, end
            line += text.count("\n", counted, i)
            base = cursor_b + len(text[cursor_c:i].encode("utf-8"))
            text = text[i:]
            if eof and not ended:
                if text.strip():
                    raise LlavaFormatError(f"{path}: the JSON list is not closed", path)
                raise LlavaFormatError(f"{path}: expected a JSON list of records (or use .jsonl)", path)
    return built.index()


def _cache_file(path: Path) -> Path:
    from ..storage import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"v{VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    return cache_dir() / "llava-index" / f"{key}.npz"


def _problems_array(problems: tuple[Problem, ...]) -> np.ndarray:
    blob = json.dumps([[p.line, p.kind, p.text] for p in problems]).encode("utf-8")
    return np.frombuffer(blob, dtype=np.uint8)


def index(path: str | Path) -> RecordIndex:
    """The file's record index, built once and cached (see module docstring); a file that cannot
    be read as records at all is a :class:`LlavaFormatError` naming it and the line."""
    path = Path(path)
    if not path.is_file():
        raise LlavaFormatError(f"{path}: no such LLaVA-format file", path)
    cached = _cache_file(path)
    try:
        with np.load(cached, allow_pickle=False) as z:
            problems = tuple(Problem(*p) for p in json.loads(z["problems"].tobytes().decode("utf-8")))
            return RecordIndex(z["offsets"], z["lengths"], z["has_image"], z["words"], z["lines"], z["names"],
                               z["name_starts"], problems, int(z["bad"]))
    except (OSError, KeyError, ValueError):
        pass
    built = _index_jsonl(path) if path.suffix == ".jsonl" else _index_json_list(path)
    if not len(built) and not built.bad:
        raise LlavaFormatError(f"{path}: no records", path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.npz")
    np.savez(tmp, offsets=built.offsets, lengths=built.lengths, has_image=built.has_image, words=built.words,
             lines=built.lines, names=built.names, name_starts=built.name_starts,
             problems=_problems_array(built.problems), bad=np.array(built.bad))
    os.replace(tmp, cached)
    return built

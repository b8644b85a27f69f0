"""A LLaVA-format file checked as a cell will read it, before anything trains: every record (its
index: :mod:`.llava_index`), every image path (it exists), and with ``deep`` every image decoded —
in parallel, with a progress line. Each problem names the file, the line (from 1) and the field;
each kind of problem is shown a few times and counted ("and 412 more").

No torch: ``validate`` runs it in seconds on 665K records (the index is cached, so ``run`` does not
read the file again).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from .llava_index import LlavaFormatError, index

K = TypeVar("K")  # whatever names an image in a check's answer
SHOWN = 5  # problems of one kind named per file; the rest counted
DECODE_CHUNK = 64  # images decoded per task


def _decode(paths: list[str]) -> list[str | None]:
    """Why each image cannot be decoded, or None (in a worker process)."""
    from PIL import Image

    out: list[str | None] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()  # a truncated file fails here, not at open
            out.append(None)
        except Exception as e:  # noqa: BLE001 — any reason Pillow gives is the image's problem
            out.append(f"{type(e).__name__}: {e}")
    return out


class _Progress:
    """``decoding images 4,096/10,000 (41%)`` on stderr, at most twice a second."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.last = total, label, 0, 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.5 or self.done == self.total:
            self.last = now
            end = "\n" if self.done == self.total else ("\r" if sys.stderr.isatty() else "\n")
            sys.stderr.write(f"{self.label} {self.done:,}/{self.total:,} ({100 * self.done // max(self.total, 1)}%)"
                             + end)
            sys.stderr.flush()


def llava_problems(path: str | Path, image_root: str | Path | None, deep: bool = False) -> list[str]:
    """Every problem of the file, capped per kind: its records, its images' paths, and with
    ``deep`` its images decoded."""
    path = Path(path)
    try:
        idx = index(path)
    except LlavaFormatError as e:
        return [str(e)]
    found: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)

    def add(kind: str, text: str) -> None:
        counts[kind] += 1
        if len(found[kind]) < SHOWN:
            found[kind].append(text)

    for p in idx.problems:
        add(p.kind, f"{path}: line {p.line}: {p.text}")
    counts["records"] += idx.bad - len(idx.problems)  # beyond the ones the index kept
    root = Path(image_root) if image_root else path.parent
    present = []
    for i in range(len(idx)):
        name = idx.image(i)
        if name is None:
            continue
        image = root / name
        if image.is_file():
            present.append((i, image))
        else:
            add("missing images", f"{path}: line {idx.lines[i]}: image: {image} does not exist")
    if deep:
        for (i, image), why in undecodable(present, f"{path.name}: decoding images"):
            add("undecodable images", f"{path}: line {idx.lines[i]}: image: {image} cannot be decoded ({why})")
    out = [line for kind in found for line in found[kind]]
    out += [f"{path}: and {counts[kind] - len(found.get(kind, []))} more {_named(kind)}" for kind in counts
            if counts[kind] > len(found.get(kind, []))]
    return out


def undecodable(items: Sequence[tuple[K, Path]], label: str) -> list[tuple[tuple[K, Path], str]]:
    """Each (key, image) Pillow cannot decode, with why: decoded in parallel processes, a progress
    line on stderr."""
    from concurrent.futures import ProcessPoolExecutor

    if not items:
        return []
    progress = _Progress(len(items), label)
    chunks = [items[k:k + DECODE_CHUNK] for k in range(0, len(items), DECODE_CHUNK)]
    workers = max(1, min(len(chunks), os.cpu_count() or 1))
    out = []
    with ProcessPoolExecutor(workers) as pool:
        for chunk, whys in zip(chunks, pool.map(_decode, [[str(p) for _, p in c] for c in chunks])):
            out += [(item, why) for item, why in zip(chunk, whys) if why]
            progress.advance(len(chunk))
    return out


def _named(kind: str) -> str:
    return {"json": "lines that are not JSON", "encoding": "lines that are not UTF-8",
            "structure": "malformed records", "markers": "records with misplaced <image> markers",
            "records": "bad records"}.get(kind, kind)

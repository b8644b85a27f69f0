"""``vlmscale convert-benchmark KIND SOURCE… -o questions.jsonl``: a benchmark's own release — its
public layout, or LLaVA-1.5's evaluation folder — as the JSONL its scorer reads, in one documented
step. Images embedded in the release (MMBench's base64, parquet bytes) are written to an image
folder; images the release keeps as files stay where they are (the spec's ``image_root`` points at
them). Every line written is checked against what its scorer reads.

One converter per scorer name (the registry the CLI's choices come from), each a function of the
source files and the image folder yielding question dicts. Pure: no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from . import choice, open_answers, yes_no  # noqa: F401 — each registers its converters
from .registry import CONVERTERS, ConversionError, Converter

__all__ = ["CONVERTERS", "ConversionError", "Converter", "convert"]


def convert(kind: str, sources: list[str], output: str, images: str | None = None, **options) -> tuple[int, Path | None]:
    """Write ``output`` (JSONL, atomically) from ``sources``; (questions written, image folder or None)."""
    from workloads.benchmark_files import question_problems, read_questions
    from workloads.config import BenchmarkConfig

    from ..store.layout import atomic_write_text

    if kind not in CONVERTERS:
        raise UsageError(f"no converter for {kind!r}; choose one of {', '.join(CONVERTERS)}")
    c = CONVERTERS[kind]
    paths = [Path(s).expanduser() for s in sources]
    for p in paths:
        if not p.exists():
            raise ConversionError(f"{p}: no such file or directory")
    out = Path(output).expanduser()
    folder = Path(images).expanduser() if images else out.with_name(f"{out.stem}_images")
    if c.embedded_images:
        folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(q, ensure_ascii=False) for q in c.fn(paths, folder, **options)]
    if not lines:
        raise ConversionError(f"{', '.join(map(str, paths))}: no questions found for {kind}")
    staged = out.with_name(f".{out.name}.checking")
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text("".join(line + "\n" for line in lines))
    try:
        problems = question_problems(BenchmarkConfig(kind, str(staged), kind), read_questions(staged))
    finally:
        staged.unlink()
    if problems:
        raise ConversionError(f"{kind}: the converted questions would not score: {problems[0].split(': ', 1)[1]}")
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return len(lines), folder if c.embedded_images else None

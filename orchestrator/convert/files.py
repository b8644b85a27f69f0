"""Reading a release's files — JSON, JSON lines, TSV, parquet — and writing its embedded images,
every failure naming the file (and the line or row)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .registry import ConversionError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def _error(message: str):
    return ConversionError(message)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _error(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    from workloads.benchmark_files import json_lines

    return json_lines(path.read_text(encoding="utf-8"), str(path), ConversionError)


def read_table(path: Path) -> list[dict]:
    """Rows of a TSV (MMBench) or parquet file (the Hugging Face releases), as dicts of plain values."""
    import pandas as pd

    try:
        if path.suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 — pandas and pyarrow raise many kinds for a file not in the format
        raise _error(f"{path}: cannot be read as {'TSV' if path.suffix == '.tsv' else 'parquet'} "
                     f"({str(e).splitlines()[0][:200]})") from None
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays (parquet lists)
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def table_rows(sources: list[Path], fields: tuple[str, ...]) -> Iterator[tuple[str, int, dict]]:
    """(where, index, row) of every row of every table, each holding ``fields``."""
    for source in sources:
        for i, row in enumerate(read_table(source)):
            where = f"{source}: row {i}"
            need(row, fields, where)
            yield where, i, row


def need(row: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise _error(f"{where}: missing {', '.join(missing)}")


def missing_value(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan", "none"))


def save_image(data: Any, folder: Path, stem: str, where: str) -> str:
    """Write an embedded image (bytes, base64 text, or a parquet image cell {bytes, path}) as
    ``folder/<stem><suffix>``; its name relative to the folder."""
    if isinstance(data, dict):
        suffix = Path(str(data.get("path") or "")).suffix.lower()
        data = data.get("bytes")
    else:
        suffix = ""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _error(f"{where}: image: neither image bytes nor base64") from None
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise _error(f"{where}: image: no image data")
    if suffix not in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                suffix = "." + (im.format or "png").lower().replace("jpeg", "jpg")
        except (UnidentifiedImageError, OSError):
            raise _error(f"{where}: image: the bytes are not an image Pillow can read") from None
    name = f"{stem}{suffix}"
    (folder / name).write_bytes(bytes(data))
    return name


def image_beside(folder: Path, stem: str) -> Path | None:
    """The image file named ``stem`` in ``folder`` (any of the usual suffixes)."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None

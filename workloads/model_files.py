"""A saved model checked as ``from_pretrained`` will read it, without reading its weights: its config
loaded by its class and the model built from it on the meta device (a value of the wrong type fails
here, naming config.json, not forty seconds into a cell), its tokenizer's files parsed, and each
weights file's header read and held against the file's size (a half-copied safetensors file is
found by its length). One line per problem, naming the file.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

HEADER_MAX = 100 << 20  # a safetensors header larger than this is not one


def config_problems(where: str, directory: Path, what: str) -> list[str]:
    """The config as its class reads it, and the model it describes built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config_file = directory / "config.json"
    try:
        config = AutoConfig.from_pretrained(str(directory))
    except Exception as e:  # noqa: BLE001 — whatever transformers raises, the file is the cause
        return [f"{where}: {config_file}: {_first(e)}"]
    builder = AutoModelForCausalLM if what == "causal LM" else AutoModel
    try:
        with torch.device("meta"):
            builder.from_config(config)
    except Exception as e:  # noqa: BLE001 — a value the model cannot be built from
        return [f"{where}: {config_file}: the {what} cannot be built from it ({_first(e)})"]
    return []


def tokenizer_problems(where: str, directory: Path) -> list[str]:
    out = []
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                 "added_tokens.json"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            out.append(f"{where}: {path}: not valid JSON ({_first(e)})")
            continue
        if name == "tokenizer.json":
            from tokenizers import Tokenizer

            try:
                Tokenizer.from_str(json.dumps(doc))
            except Exception as e:  # noqa: BLE001 — the tokenizers library's parse errors
                out.append(f"{where}: {path}: not a tokenizer the tokenizers library can load ({_first(e)})")
    return out


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (its header's tensors against its size), or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path}: {size} bytes, too short for a safetensors file"
        (n,) = struct.unpack("<Q", head)
        if n > min(HEADER_MAX, size - 8):
            return f"{path}: not a safetensors file (its header would be {n} bytes of a {size}-byte file)"
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{path}: its safetensors header is not valid JSON"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2]
    need = 8 + n + max(ends, default=0)
    if need > size:
        return f"{path}: truncated: its header describes {need:,} bytes, the file holds {size:,} (copy it again)"
    return None


def weights_problems(where: str, directory: Path) -> list[str]:
    out = []
    index = next((directory / n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if (directory / n).is_file()), None)
    files: list[Path] = []
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError, UnicodeDecodeError):
            return [f"{where}: {index}: not a weights index (a weight_map of tensor → file)"]
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            out.append(f"{where}: {index} names {len(missing)} missing shard(s): {', '.join(missing[:3])}")
        files = [directory / s for s in shards if (directory / s).is_file()]
    else:
        files = [p for p in (directory / "model.safetensors", directory / "pytorch_model.bin") if p.is_file()]
    for path in files:
        if path.suffix == ".safetensors":
            why = safetensors_problem(path)
        else:
            why = None if zipfile.is_zipfile(path) else f"{path}: not a torch checkpoint (no zip archive: cut short?)"
        if why:
            out.append(f"{where}: {why}")
    return out


def model_file_problems(where: str, directory: Path, what: str, tokenizer: bool) -> list[str]:
    """Every problem of a local model directory (config, tokenizer if it should hold one, weights)."""
    out = config_problems(where, directory, what) + weights_problems(where, directory)
    if tokenizer:
        out += tokenizer_problems(where, directory)
    return out


def _first(e: BaseException) -> str:
    """The library's message on one line: its first lines, where the reason often sits below the
    heading ("Validation error for field 'hidden_size': TypeError: … expected int, got str")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (" ".join(lines[:3]) if lines else type(e).__name__)[:300]

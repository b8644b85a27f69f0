"""Where a spec's models and data files are, and whether they are usable — checked on the driver,
before anything runs.

A model reference is a preset name, a local directory (absolute, ``~/…``, or relative to the spec
file's folder), a Hugging Face hub id (``org/name``: from the local cache when ``HF_HUB_OFFLINE=1``)
or ``s3://bucket/prefix`` (fetched once into the cache on each machine). :func:`locate` turns a
reference into the location every cell and every pod uses, whatever its working directory;
:func:`problems` lists what is wrong with each, one line each, naming the field and the path.
Pure: the checks read files (config.json, tokenizer and image-processor files), never load a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from workloads.presets import is_llm_preset, is_vision_preset

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Located:
    ref: str  # as the spec wrote it
    kind: str  # preset, local, hub or s3
    location: str  # what from_pretrained (or localize) opens


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not ref.startswith((".", "~", "/"))


def locate(ref: str, base: Path | None, preset) -> Located:
    """Where ``ref`` is: ``preset(ref)`` says whether it is a preset name; ``base`` is the spec
    file's folder (relative paths resolve against it; None: the working directory)."""
    if preset(ref):
        return Located(ref, "preset", ref)
    if ref.startswith("s3://"):
        return Located(ref, "s3", ref.rstrip("/"))
    path = Path(ref).expanduser()
    if path.is_absolute():
        return Located(ref, "local", str(path.resolve()))
    anchored = ((base or Path.cwd()) / path).resolve()
    if anchored.exists() or not _looks_like_hub_id(ref):
        return Located(ref, "local", str(anchored))
    return Located(ref, "hub", ref)


def locate_file(ref: str | None, base: Path | None) -> str | None:
    """A data file or folder of the spec: absolute, ``~/…``, or relative to the spec's folder."""
    if ref is None or ref.startswith("s3://"):
        return ref
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else ((base or Path.cwd()) / path).resolve())


def _hub_cached(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return isinstance(found, str)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _read_config(where: str, directory: Path) -> tuple[dict | None, str | None]:
    config = directory / "config.json"
    if not config.is_file():
        return None, f"{where}: {directory} holds no config.json (a model saved with save_pretrained has one)"
    try:
        doc = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"{where}: {config} is not valid JSON ({e})"
    if not isinstance(doc, dict) or "model_type" not in doc:
        return None, f"{where}: {config} names no model_type; is it a transformers config?"
    return doc, None


def model_problems(where: str, loc: Located, needs: tuple[str, ...], what: str) -> list[str]:
    """What stops ``loc`` from loading as a model with its ``needs`` (file groups: a tokenizer, an
    image processor), or []."""
    if loc.kind == "preset":
        return []
    if loc.kind == "hub":
        if not _offline():
            return []  # downloaded by the cells; nothing to check without the hub
        if not _hub_cached(loc.location, "config.json"):
            return [f"{where}: {loc.ref!r} is not a directory and not in the Hugging Face cache (HF_HUB_OFFLINE=1): "
                    f"fetch it with `hf download {loc.location}` where the hub is reachable, or give the path of a "
                    f"local {what}"]
        return []
    if loc.kind == "s3":
        from workloads.storage import path_of

        try:
            present = (path_of(loc.location) / "config.json").exists()
        except Exception as e:  # noqa: BLE001 — no credentials, no bucket: what the user must fix
            return [f"{where}: {loc.ref}: cannot be read ({str(e).splitlines()[0][:200]})"]
        return [] if present else [f"{where}: {loc.ref} holds no config.json"]
    directory = Path(loc.location)
    if not directory.is_dir():
        return [f"{where}: {loc.location} is not a directory (a {what} saved with save_pretrained, a Hugging Face "
                f"id or s3://…)"]
    _, problem = _read_config(where, directory)
    if problem:
        return [problem]
    out = []
    if not any((directory / f).is_file() for f in WEIGHT_FILES):
        out.append(f"{where}: {directory} holds no weights ({' or '.join(WEIGHT_FILES)})")
    for need in needs:
        files = TOKENIZER_FILES if need == "tokenizer" else IMAGE_PROCESSOR_FILES
        if not any((directory / f).is_file() for f in files):
            out.append(f"{where}: {directory} has no {need} ({' or '.join(files)}); save it beside the model "
                       f"({'tokenizer' if need == 'tokenizer' else 'image_processor'}.save_pretrained)")
    if not out:  # as from_pretrained will read it: the config by its class, the files' contents
        from workloads.model_files import model_file_problems

        out = model_file_problems(where, directory, what, tokenizer="tokenizer" in needs)
    return out


def vision_grid(loc: Located) -> int | None:
    """The patch grid side of a local vision checkpoint, from its config (None: unknown here)."""
    if loc.kind != "local":
        return None
    config = Path(loc.location) / "config.json"
    try:
        c = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    c = c.get("vision_config", c)
    if "image_size" in c and "patch_size" in c:
        return int(c["image_size"]) // int(c["patch_size"])
    return None


def hidden_size(loc: Located) -> int | None:
    """The width of a preset or a local checkpoint (a full CLIP/SigLIP's vision tower), from its
    config (None: unknown here)."""
    if loc.kind == "preset":
        from workloads.presets import llm_shape, vision_shape

        return (vision_shape(loc.location) if is_vision_preset(loc.location) else llm_shape(loc.location)).hidden
    if loc.kind != "local":
        return None
    try:
        c = json.loads((Path(loc.location) / "config.json").read_text())
        value = c.get("vision_config", c).get("hidden_size")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def preset_llm(ref: str) -> bool:
    return is_llm_preset(ref)


def preset_vision(ref: str) -> bool:
    return is_vision_preset(ref)

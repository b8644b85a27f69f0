"""Parts of a VLM started from saved weights, strictly: LLaVA's ``mm_projector.bin`` as a
compressor's reference saves it, or a vlmscale checkpoint's ``model.pt``.

A file in LLaVA's layout holds its keys under ``model.mm_projector.`` (or bare); the compressor
kind says how they map onto the VLM (``CompressorKind.reference_layout``: QueCC under ``0.`` and
its MLP under ``1.``/``3.``, TokenPacker's MLP under ``mlp.``, LLaVA-1.5's plain MLP under
``0.``/``2.``). Such a file must hold every parameter of the parts the layout reaches, and nothing
else: one line names the missing keys, the unexpected ones and any shape that differs, in the
file's own names. A vlmscale checkpoint gives the part asked for (``projector.``, ``compressor.``).

The plan (:func:`plan`) is pure: ``validate`` runs it on a file's tensor shapes and the shapes the
spec's cells will build (``CompressorKind.parameter_shapes``), before anything trains; the cell
runs it again on the built module's own. Torch is imported only to read a torch file.
"""

from __future__ import annotations

from pathlib import Path

from .compressors import kind as compressor_kind
from .compressors.base import Shape, linear

LLAVA_PREFIXES = ("model.mm_projector.", "mm_projector.")  # how LLaVA's trainer names the saved keys
CHECKPOINT_PARTS = ("projector.", "compressor.")  # a vlmscale checkpoint's keys for these parts
SHOWN = 4  # keys named per kind of problem in the one line


class WeightsMismatch(ValueError):
    """A weights file does not fit the parts it should start."""


def projector_shapes(dim: int, llm_dim: int) -> dict[str, tuple[int, ...]]:
    """LLaVA-1.5's MLP projector (workloads.model.Projector), by its keys in the VLM."""
    return {**linear("projector.net.0.", dim, llm_dim), **linear("projector.net.2.", llm_dim, llm_dim)}


def expected_shapes(compressor: str, shape: Shape) -> dict[str, tuple[int, ...]]:
    """The compressor's and the projector's parameters, by their keys in the VLM."""
    comp = {f"compressor.{k}": v for k, v in compressor_kind(compressor).parameter_shapes(shape).items()}
    return {**comp, **projector_shapes(shape.dim, shape.llm_dim)}


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in a safetensors file (its JSON header alone) or a torch file
    (loaded with ``weights_only``: tensors and containers, never arbitrary objects)."""
    if str(path).endswith(".safetensors"):
        import json
        import struct

        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100 << 20:
                raise WeightsMismatch(f"{path}: not a safetensors file (a {size}-byte header)")
            header = json.loads(f.read(size))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return {k: tuple(v.shape) for k, v in read_tensors(path, mmap=True).items()}


def read_tensors(path: str, mmap: bool = False) -> dict:
    """The tensors of a weights file (a DeepSpeed file's ``module``)."""
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError:
        if not mmap:
            raise
        state = torch.load(path, map_location="cpu", weights_only=True)  # an old, non-zip torch file
    state = state.get("module", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightsMismatch(f"{path}: holds no named tensors")
    return {k: v for k, v in state.items() if hasattr(v, "shape")}


def layout_of(keys: list[str]) -> str:
    """``checkpoint`` (a vlmscale model.pt) or ``llava`` (an mm_projector.bin, prefixed or bare)."""
    if any(k.startswith(LLAVA_PREFIXES) for k in keys):
        return "llava"
    return "checkpoint" if any(k.startswith(CHECKPOINT_PARTS) for k in keys) else "llava"


def plan(file_shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], compressor: str,
         part: str, where: str) -> dict[str, str]:
    """{file key: VLM key} of every tensor to load into ``part`` ("projector": what the file holds for
    the compressor and its MLP; "compressor": the compressor alone), or :class:`WeightsMismatch`."""
    keys = list(file_shapes)
    if layout_of(keys) == "checkpoint":
        mapping = {k: k for k in keys if k.startswith(f"{part}.")}
        wanted = {k for k in expected if k.startswith(f"{part}.")}
        what = f"the {part} of a vlmscale checkpoint"
        if not mapping:
            raise WeightsMismatch(f"{where}: holds no {part} weights (no key starts with {part}.)")
        extra: list[str] = []
    else:
        pairs = compressor_kind(compressor).reference_layout
        mapping, extra = {}, []
        for key in keys:
            bare = next((key[len(p):] for p in LLAVA_PREFIXES if key.startswith(p)), key)
            match = max((pair for pair in pairs if bare.startswith(pair[0])), key=lambda pair: len(pair[0]),
                        default=None)
            if match is None:
                extra.append(key)
            else:
                mapping[key] = match[1] + bare[len(match[0]):]
        reached = {our.split(".")[0] + "." for _, our in pairs}
        wanted = {k for k in expected if k.startswith(tuple(reached))}
        if part == "compressor":
            mapping = {f: o for f, o in mapping.items() if o.startswith("compressor.")}
            wanted = {k for k in wanted if k.startswith("compressor.")}
            if not wanted:
                raise WeightsMismatch(f"{where}: LLaVA's mm_projector for compressor '{compressor}' holds no "
                                      "compressor weights; give a vlmscale checkpoint's model.pt")
        what = f"the {'compressor and MLP projector' if 'compressor.' in reached else 'MLP projector'} " \
               f"LLaVA saves for compressor '{compressor}'"
    found = set(mapping.values())
    prefix = "" if layout_of(keys) == "checkpoint" else _container_prefix(keys)
    missing = [k if layout_of(keys) == "checkpoint" else prefix + _reference_name(k, compressor)
               for k in sorted(wanted - found)]
    extra += [f for f, o in mapping.items() if o not in wanted]
    wrong = [f"{f} is {list(file_shapes[f])}, the model's is {list(expected[o])}" for f, o in mapping.items()
             if o in wanted and tuple(file_shapes[f]) != tuple(expected[o])]
    if missing or extra or wrong:
        problems = [_listed("missing", missing), _listed("unexpected", sorted(extra)), _listed("shape", wrong)]
        raise WeightsMismatch(f"{where}: does not fit {what}: " + "; ".join(p for p in problems if p))
    return {f: o for f, o in mapping.items() if o in wanted}


def _container_prefix(keys: list[str]) -> str:
    return next((p for p in LLAVA_PREFIXES if any(k.startswith(p) for k in keys)), "")


def _reference_name(our: str, compressor: str) -> str:
    """A VLM key in the reference's names (to name what a file lacks as its owner would)."""
    for ref, mine in compressor_kind(compressor).reference_layout:
        if our.startswith(mine):
            return ref + our[len(mine):]
    return our


def _listed(label: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{label} {', '.join(items[:SHOWN])}{more}"


def load_into(model, path: str, part: str) -> None:
    """Start ``part`` of a built VLM (and, from LLaVA's layout, the compressor with the projector)
    from ``path``, strictly (:func:`plan` on the module's own shapes)."""
    from .storage import localize

    local = localize(path)
    tensors = read_tensors(local)
    expected = {f"compressor.{k}": tuple(v.shape) for k, v in model.compressor.state_dict().items()}
    expected.update({f"projector.{k}": tuple(v.shape) for k, v in model.projector.state_dict().items()})
    mapping = plan({k: tuple(v.shape) for k, v in tensors.items()}, expected, model.compressor.kind.name, part,
                   f"vision.{part}_from {path}")
    for target in ("compressor", "projector"):
        chunk = {o[len(target) + 1:]: tensors[f] for f, o in mapping.items() if o.startswith(target + ".")}
        if chunk:
            module = getattr(model, target)
            module.load_state_dict({**module.state_dict(), **chunk}, strict=True)


def readable(path: str | Path, where: str) -> tuple[dict[str, tuple[int, ...]] | None, str | None]:
    """(its tensors' shapes, None), or (None, why it cannot be read as a weights file)."""
    try:
        return tensor_shapes(str(path)), None
    except (OSError, ValueError, RuntimeError) as e:  # a torch file it cannot unpack, a bad header
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, f"{where}: cannot be read as a weights file ({first[:200]})"


def fit_problem(file_shapes: dict[str, tuple[int, ...]], compressor: str, shape: Shape, part: str,
                where: str) -> str | None:
    """Why a file of these tensors cannot start ``part`` of a cell built as ``shape`` (one line), or None."""
    try:
        plan(file_shapes, expected_shapes(compressor, shape), compressor, part, where)
    except WeightsMismatch as e:
        return str(e)
    return None

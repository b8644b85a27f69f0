"""Reading a spec: YAML (safe_load) → validated :class:`Experiment`, every error at once in one
line; and the spec's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SpecError
from .base import BOUND_REASONS
from .cells import expand
from .experiment import API_VERSION, KIND, Experiment
from .limits import check_spec_file

MAX_NODES = 500_000  # YAML nodes a document may expand to, an alias counted at every use
MAX_DEPTH = 64  # nesting of mappings and sequences
REPR = 120  # characters of a refused value quoted in a message


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
    where = _loc(tuple(loc)) or "(document)"
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling (see `vlmscale schema`)"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "less_than_equal" and err.get("ctx", {}).get("le") in BOUND_REASONS:
        msg = f"{msg} ({BOUND_REASONS[err['ctx']['le']]})"
    elif kind == "literal_error" or kind.endswith("_type") or kind.endswith("_parsing"):
        got = repr(err.get("input"))
        msg = f"{msg}, got {got if len(got) <= REPR else got[:REPR] + '…'}"
    return f"{where}: {msg}"


def _all_errors(e: ValidationError, source: str) -> str:
    """Every validation error of the document, in one line: fix them all in one go."""
    seen = list(dict.fromkeys(_describe(dict(err)) for err in e.errors()))
    return f"{source}: " + "; ".join(seen)


def parse(document: Any, source: str = "<spec>") -> Experiment:
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping with apiVersion, kind, metadata and spec")
    try:
        exp = Experiment.model_validate(document)
    except ValidationError as e:
        raise SpecError(_all_errors(e, source)) from None
    expand(exp)  # key collisions
    return exp


def _expanded(node, depth: int, sizes: dict[int, int], open_: set[int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (memoised: a bomb of ten
    aliases of ten aliases is counted, not built)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise SpecError("a YAML alias refers to a node that contains it (a recursive document)")
    if depth > MAX_DEPTH:
        raise SpecError(f"mappings and lists nested more than {MAX_DEPTH} deep")
    open_.add(key)
    children = node.value if isinstance(node.value, list) else []
    flat = [c for pair in children for c in pair] if children and isinstance(children[0], tuple) else children
    size = 1 + sum(_expanded(c, depth + 1, sizes, open_) for c in flat)
    open_.discard(key)
    sizes[key] = size
    if size > MAX_NODES:
        raise SpecError(f"the document expands to more than {MAX_NODES:,} YAML nodes (an alias repeats what it "
                        "points to at every use); write the lists out, or move them into files the spec names")
    return size


def read_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load``, bounded: aliases are counted as they expand, nesting and cycles refused,
    before any Python object is built."""
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters here, before parsing
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise SpecError(f"{source}: line {line}, column {column}: character #x{e.character:04x} is not "
                        "allowed in YAML (a control character: remove it, or write it escaped in a quoted "
                        "string)") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _expanded(node, 0, {}, set())
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{source}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: mappings and lists nested too deeply (more than {MAX_DEPTH})") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> Experiment:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such file")
    check_spec_file(p)
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a text file (UTF-8 YAML expected)") from None
    exp = parse(read_yaml(text, str(p)), str(p))
    base = exp.spec.base_dir
    exp._source_dir = Path(base).expanduser() if base is not None else p.resolve().parent
    return exp


def json_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema()
    schema["$id"] = f"https://{API_VERSION}/scalingexperiment.schema.json"
    schema["title"] = KIND
    return schema

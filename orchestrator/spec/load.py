"""Reading a spec: YAML (safe_load) → validated :class:`Experiment`, every error at once in one
line; and the spec's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SpecError
from .cells import expand
from .experiment import API_VERSION, KIND, Experiment
from .limits import check_spec_file


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
    elif kind == "literal_error" or kind.endswith("_type") or kind.endswith("_parsing"):
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{where}: {msg}"


def _all_errors(e: ValidationError, source: str) -> str:
    """Every validation error of the document, in one line: fix them all in one go."""
    seen = list(dict.fromkeys(_describe(err) for err in e.errors()))
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


def load(path: str | Path) -> Experiment:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such file")
    check_spec_file(p)
    try:
        document = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{p}: malformed YAML{where}: {problem}") from None
    exp = parse(document, str(p))
    exp._source_dir = p.resolve().parent
    return exp


def json_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema()
    schema["$id"] = f"https://{API_VERSION}/scalingexperiment.schema.json"
    schema["title"] = KIND
    return schema

"""Which law an analysis fits, and over what: a built-in form by name, or a law written as an
expression — in the spec (``fit.law``), on the command line (``--law 'E + A/N**alpha'`` with
``--param alpha=0,2 --param A=log:1,1e4``) or in a YAML file (``--law laws.yaml``, or
``laws.yaml:name`` for one law of a file holding several) — with the parameters that take a value
per group (``per_group``) and the values that pin the law's other inputs for the frontier
(``at``). The command line overrides the spec, the spec the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..scaling.expression import LawError, law_from_doc
from ..scaling.forms import FORMS, LawForm
from ..scaling.pinned import parse_at

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LawChoice:
    law: LawForm
    per_group: tuple[str, ...] = ()
    at: dict[str, float] = field(default_factory=dict)
    group: str | None = None  # the column that splits the fit (one law per value, or jointly with per_group)

    @property
    def joint(self) -> bool:
        return bool(self.per_group)


def param_from_cli(item: str) -> tuple[str, Any]:
    """``alpha=0,2`` → ("alpha", [0, 2]); ``A=log:1,1e4`` → ("A", {"log_range": [1, 1e4]})."""
    name, sep, value = item.partition("=")
    log = value.startswith("log:")
    parts = (value[4:] if log else value).split(",")
    try:
        lo, hi = (float(x) for x in parts)
    except ValueError:
        raise UsageError(f"--param {item!r}: give NAME=LOW,HIGH or NAME=log:LOW,HIGH (a positive scale), "
                         "e.g. --param alpha=0,2 --param A=log:1,1e4") from None
    if not sep or not name.strip():
        raise UsageError(f"--param {item!r}: give NAME=LOW,HIGH")
    return name.strip(), ({"log_range": [lo, hi]} if log else [lo, hi])


def _from_file(spec: str) -> dict:
    from ..spec.load import read_yaml

    path, _, key = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--law {spec}: no such file")
    doc = read_yaml(p.read_text(), str(p))
    if key:
        laws = doc.get("laws", doc) if isinstance(doc, dict) else None
        if not isinstance(laws, dict) or key not in laws:
            raise UsageError(f"--law {spec}: {p} holds no law named {key!r}")
        doc = laws[key]
    return doc


def choose(a=None, exp=None) -> LawChoice:
    """The law of an analysis: the command line's (``a``: its options, or None), else the spec's
    (``exp``), else the multiplicative form."""
    f = exp.spec.fit if exp is not None else None
    given = getattr(a, "law", None)
    doc: dict | None = None
    where = "--law"
    if given:
        if given in FORMS:
            law = FORMS[given]
        elif given.split(":")[0].endswith(YAML_SUFFIXES):
            doc = _from_file(given)
        else:
            params = dict(param_from_cli(x) for x in getattr(a, "param", None) or ())
            doc = {"expression": given, "params": params}
            if getattr(a, "floor", None):
                doc["floor"] = a.floor
    elif f is not None and f.law is not None:
        doc, where = f.law.model_dump(exclude_none=True), "spec.fit.law"
    if doc is None and not given:
        law = FORMS[getattr(a, "form", None) or (f.form if f is not None else "multiplicative")]
    if doc is not None:
        try:
            law = law_from_doc(doc, where)
        except LawError as e:
            raise UsageError(f"{where}: {e}" if not str(e).startswith(where) else str(e)) from None
    per_group = tuple(x.strip() for x in (getattr(a, "per_group", None) or "").split(",") if x.strip()) \
        or tuple((doc or {}).get("per_group") or ()) or tuple((f.per_group if f is not None else None) or ())
    group = getattr(a, "group", None) or (f.group if f is not None else None)
    at = {**((f.at or {}) if f is not None else {}), **parse_at(getattr(a, "at", None))}
    return LawChoice(law, per_group, at, group)

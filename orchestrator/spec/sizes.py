"""N as the study counts it (``spec.fit.parameters``): what the law's LLM size is, in the fit, the
frontier, the FLOPs figures, the proposals, the conclusion and the report.

    non_embedding   the LLM's parameters less its token embeddings and output head, measured by each
                    cell (the default: what scaling laws of LLMs usually count)
    total           every parameter of the LLM, embeddings included, measured by each cell
    nominal         the size in the model's name, in parameters (Qwen1.5-0.5B → 5e8): what the paper
                    fits (0.5, 1.8, 4, 7 B), or a size given per LLM in ``fit.nominal_sizes``

On the paper's own 28 points the choice moves α from 0.071 (nominal) to 0.062 (non-embedding) and
V* at Q = 50 from 13.5 to 16.1 tokens: a study must say which N it fits. Pure: no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Counting:
    name: str
    label: str  # what N is, in words: the fit's output, the conclusion, the report's axis
    summary: str  # one line for the docs
    metric: str | None  # the cell metric that holds it (None: not a measurement)


COUNTINGS: dict[str, Counting] = {c.name: c for c in (
    Counting("non_embedding", "non-embedding parameters (measured)",
             "the LLM's parameters less its token embeddings and output head, as each cell measures them",
             "llm_params"),
    Counting("total", "parameters with embeddings (measured)",
             "every parameter of the LLM, embeddings and output head included, as each cell measures them",
             "llm_params_total"),
    Counting("nominal", "nominal parameters (the models' names)",
             "the size in the model's name (Qwen1.5-0.5B: 5e8) or fit.nominal_sizes; what the paper fits",
             None),
)}
DEFAULT = "non_embedding"

# a size in a model's name: 0.5B, 1.8b, 7B, 125M, 1.1T — a number not inside a longer one (Qwen1.5-…),
# a unit not followed by a letter (…-7b-v1.5 reads 7b, "7Bn" nothing)
_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([kKmMbBtT])(?![a-zA-Z])")
_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def size_in_name(ref: str) -> float | None:
    """The one size the model's name states (its last path component), in parameters; None when it
    states none or several."""
    found = _SIZE.findall(ref.rstrip("/").rsplit("/", 1)[-1])
    if len(found) != 1:
        return None
    number, unit = found[0]
    return float(number) * _UNITS[unit.lower()]


def nominal_size(ref: str, given: dict[str, float] | None) -> float | None:
    """An LLM's nominal size: the one given for it, else the one in its name."""
    if given and ref in given:
        return float(given[ref])
    return size_in_name(ref)


def nominal_problem(llms: list[str], given: dict[str, float] | None) -> str | None:
    """Why some LLM has no nominal size (one line naming it and the fix), or None."""
    missing = [m for m in llms if nominal_size(m, given) is None]
    if not missing:
        return None
    return (f"fit.parameters: nominal needs each LLM's size, and {', '.join(repr(m) for m in missing[:3])}"
            f"{' and more' if len(missing) > 3 else ''} states none (or several) in its name: give it in "
            "fit.nominal_sizes (e.g. {" + f"{missing[0]}: 5.0e8" + "})")


def cell_size(parameters: str, llm: str, metrics: dict, given: dict[str, float] | None) -> float | None:
    """N of a finished cell under ``parameters``: its measurement, or its LLM's nominal size."""
    counting = COUNTINGS[parameters]
    if counting.metric is None:
        return nominal_size(llm, given)
    value = metrics.get(counting.metric)
    return None if value is None else float(value)

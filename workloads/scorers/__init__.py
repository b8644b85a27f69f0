"""How a benchmark's answers are scored: the study's nine benchmarks (and TextVQA, VQAv2) each by
the rule its reference evaluator implements, and generic rules for a researcher's own benchmarks.

``SCORERS`` is the registry the spec's ``scorer`` field, the schema and the docs list; each module
of this package registers its rules (:mod:`.base` says what a rule is). Pure Python.
"""

from __future__ import annotations

from . import choice, generic, reasoning, vqa, yesno  # noqa: F401 — each registers its rules
from .base import REGISTRY, BenchmarkScore, Scored, Scorer
from .generic import simple_normalise
from .normalise import evalai_normalise, vqa_normalise

SCORERS: dict[str, Scorer] = dict(sorted(REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))

__all__ = ["SCORERS", "BenchmarkScore", "Scored", "Scorer", "evalai_normalise", "simple_normalise", "vqa_normalise"]

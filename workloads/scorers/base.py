"""What every scorer is: how a benchmark asks its questions, how it reads a generated answer, and
how a benchmark's score is made from all its answers — some rules score a group of questions at
once (MME: both questions of an image; MMBench: every rotation of a question's options).

Pure Python (no torch): a cell scores its answers with it, ``vlmscale rescore`` scores stored
answers again, and ``validate`` checks each question against what its scorer needs. A scorer is a
:class:`Scorer` subclass decorated with :func:`register` in one module of this package.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

# the suffixes LLaVA-1.5's evaluation files and scripts append to a question
SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Scored:
    """One answer, as the rule read it: ``parsed`` (a letter, yes/no, a normalised string…) and
    the question's own score in [0, 1] (a group rule may count it otherwise)."""

    parsed: Any
    score: float


@dataclass(frozen=True)
class BenchmarkScore:
    """A benchmark's accuracy in [0, 1] (``1 − error/<name>``) and the numbers its rule reports
    beside it (POPE's F1, MME's perception and cognition on their own scales…)."""

    accuracy: float
    details: dict[str, float] = field(default_factory=dict)


class Scorer:
    """A benchmark's rule. ``needs``: the question fields it reads (``validate`` refuses a line
    without one); ``reference``: the code whose rule it implements (the README says where
    vlmscale, LLaVA's scripts and lmms-eval differ)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    reference: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("answer",)
    suffix: ClassVar[str] = ""  # appended to the question unless it already ends with it
    max_new_tokens: ClassVar[int | None] = None  # the reference's generation length, if its own
    order: ClassVar[int] = 50  # place in listings

    def prompt(self, question: dict, suffix: str | None = None) -> str:
        """The question as the model is asked it (``suffix``: the spec's, instead of the rule's)."""
        return with_suffix(str(question["text"]), self.suffix if suffix is None else suffix)

    def read(self, prediction: str, question: dict, rng: random.Random) -> Scored:
        """The answer as the rule reads it, and the question's score."""
        raise NotImplementedError

    def group(self, question: dict) -> str | None:
        """The questions scored together (None: the question alone)."""
        return None

    def aggregate(self, questions: list[dict], scored: list[Scored]) -> BenchmarkScore:
        """The benchmark's score from all its answers: by default the mean of the questions'."""
        return BenchmarkScore(sum(s.score for s in scored) / len(scored) if scored else 0.0)

    def problems(self, question: dict) -> list[str]:
        """What a question lacks for this rule: ``field: why`` (one per problem)."""
        return [f"{f}: missing (the {self.name} rule reads it)" for f in self.needs if f not in question]

    def group_problems(self, questions: list[dict]) -> list[tuple[int, str]]:
        """Problems only a whole file shows (an MME image with one question): (index, ``field: why``)."""
        return []

    # ---- conveniences

    def score_all(self, questions: list[dict], predictions: list[str]) -> list[Scored]:
        """Each answer read in the file's order with one seeded generator (a rule that must guess,
        as MMMU's parser does, guesses the same way every time the same answers are scored)."""
        rng = random.Random(42)
        return [self.read(p, q, rng) for q, p in zip(questions, predictions)]

    def score(self, prediction: str, question: dict) -> float:
        """One question's score, on its own."""
        return self.read(prediction, question, random.Random(42)).score

    def evaluate(self, questions: list[dict], predictions: list[str]) -> tuple[list[Scored], BenchmarkScore]:
        scored = self.score_all(questions, predictions)
        return scored, self.aggregate(questions, scored)


def with_suffix(text: str, suffix: str) -> str:
    """``text`` + ``suffix``, unless it already ends with it (LLaVA's own question files carry it)."""
    return text if not suffix or text.endswith(suffix) else text + suffix


def options_of(question: dict) -> list[str]:
    options = question.get("options")
    return [str(o) for o in options] if isinstance(options, list) else []


def choice_problems(question: dict, at_least: int = 2) -> list[str]:
    """A multiple-choice line: its options (a list of at least two) and its answer, a letter of them."""
    out = []
    options = question.get("options")
    if not isinstance(options, list) or len(options) < at_least:
        out.append(f"options: needs a list of at least {at_least} options (got {_shown(options)})")
    answer = question.get("answer")
    if answer is None:
        out.append("answer: missing (the letter of the right option)")
    elif isinstance(options, list) and str(answer).strip().upper() not in LETTERS[:len(options)]:
        out.append(f"answer: {_shown(answer)} is not the letter of one of its {len(options)} options")
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


REGISTRY: dict[str, Scorer] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    if cls.name in REGISTRY:
        raise ValueError(f"scorer {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls

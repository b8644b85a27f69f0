"""Generic rules for a researcher's own benchmarks (the study's benchmarks have rules named for
them: their official ones). Simpler than those, and forgiving:

    exact_match      1 if the answer equals the reference, ignoring case, surrounding space and a final full stop
    vqa_accuracy     min(#annotators who gave the answer / 3, 1) after the VQA normalisation (no leave-one-out)
    multiple_choice  1 if the chosen option — its text, a leading letter, or a letter standing alone — is the reference
    yes_no           1 if the answer's first yes or no is the reference's
"""

from __future__ import annotations

import re

from .base import LETTER, Scored, Scorer, choice_problems, register
from .normalise import vqa_normalise


def simple_normalise(answer: str) -> str:
    """Lower case, no surrounding space or final full stop (GQA's exact match)."""
    return answer.strip().lower().rstrip(".").strip()


@register
class ExactMatch(Scorer):
    name, order = "exact_match", 90
    summary = "1 if the answer equals the reference, ignoring case, surrounding space and a final full stop"

    def read(self, prediction, question, rng):
        parsed = simple_normalise(prediction)
        return Scored(parsed, float(parsed == simple_normalise(str(question["answer"]))))


@register
class VQAAccuracy(Scorer):
    name, order = "vqa_accuracy", 91
    summary = "min(#annotators who gave the answer / 3, 1) after the VQA normalisation (no leave-one-out average)"

    def read(self, prediction, question, rng):
        answers = question.get("answers") or [question["answer"]]
        p = vqa_normalise(prediction)
        return Scored(p, min(sum(vqa_normalise(str(a)) == p for a in answers) / 3.0, 1.0))

    def problems(self, question):
        return [] if question.get("answers") or "answer" in question else \
            ["answers: missing (the annotators' answers, or one reference answer)"]


LETTERS = "ABCDEFGHIJ"


@register
class MultipleChoice(Scorer):
    name, order = "multiple_choice", 92
    summary = "1 if the chosen option — its text, a leading letter, or a letter standing alone — is the reference"
    needs = ("options", "answer")

    def prompt(self, question, suffix=None):
        options = question.get("options") or []
        listed = "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options))
        return f"{question['text']}{listed}{LETTER if suffix is None else suffix}"

    def problems(self, question):
        return choice_problems(question)

    def choice(self, prediction: str, options: list[str]) -> str | None:
        """The letter the prediction picks: an option's full text first ("A dog." is that option, not
        letter A), else a leading letter (``B``, ``(B)``, ``B.``), else a letter standing alone."""
        valid = LETTERS[:len(options)] if options else LETTERS
        text = prediction.strip()
        lowered = text.lower().rstrip(".").strip()
        for i, option in enumerate(options):
            if lowered == str(option).strip().lower().rstrip("."):
                return LETTERS[i]
        m = re.match(r"^\(?([A-J])\)?(?:[.:)\s]|$)", text)
        if m and m.group(1) in valid:
            return m.group(1)
        m = re.search(r"\b([A-J])\b", text)
        return m.group(1) if m and m.group(1) in valid else None

    def read(self, prediction, question, rng):
        letter = self.choice(prediction, question.get("options") or [])
        return Scored(letter, float(letter == str(question["answer"]).strip().upper()))


@register
class YesNo(Scorer):
    name, order = "yes_no", 93
    summary = "1 if the answer's first yes or no is the reference's"

    @staticmethod
    def polarity(text: str) -> str | None:
        words = re.findall(r"[a-z]+", text.lower())
        for w in words:  # the first yes or no, as POPE's evaluation reads it
            if w in ("yes", "no"):
                return w
        return None

    def read(self, prediction, question, rng):
        parsed = self.polarity(prediction)
        return Scored(parsed, float(parsed == self.polarity(str(question["answer"]))))

"""Open answers scored as their benchmarks' evaluators score them.

    gqa      LLaVA's scripts/convert_gqa_for_eval.py, then GQA's evaluator: the answer without its
             final full stops, lower-cased, equal to the reference
    vqav2    LLaVA's scripts/convert_vqav2_for_submission.py (EvalAI's processor) then the official
             evaluator (GT-Vision-Lab/VQA vqaEval.py): both normalised only where the annotators
             disagree; the accuracy min(matches / 3, 1) averaged over the ten leave-one-out sets of nine
    textvqa  LLaVA's eval_textvqa.py (m4c_evaluator.TextVQAAccuracyEvaluator): EvalAI's processor on
             the answer and the ten references, the same leave-one-out average
"""

from __future__ import annotations

from .base import SHORT, Scored, Scorer, register
from .normalise import digits_articles, evalai_normalise, punctuation

# ten annotators, the leave-one-out sets of nine
ANNOTATORS = 10


def leave_one_out(matches: list[bool]) -> float:
    """The VQA accuracy: for each annotator, min(1, the others who gave the answer / 3), averaged."""
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(matches)


@register
class GQA(Scorer):
    name, order = "gqa", 10
    summary = "the answer without its final full stops, lower-cased, equal to the reference (LLaVA's conversion, GQA's evaluator)"
    reference = "LLaVA scripts/convert_gqa_for_eval.py + GQA eval.py (exact equality)"
    suffix = SHORT

    def read(self, prediction, question, rng):
        parsed = prediction.rstrip(".").lower()
        return Scored(parsed, float(parsed == str(question["answer"])))


@register
class VQAv2(Scorer):
    name, order = "vqav2", 11
    summary = "EvalAI's processor, then the official evaluator: min(matches / 3, 1) over the ten leave-one-out sets"
    reference = "LLaVA scripts/convert_vqav2_for_submission.py + GT-Vision-Lab/VQA vqaEval.py"
    needs = ("answers",)
    suffix = SHORT

    def read(self, prediction, question, rng):
        submitted = evalai_normalise(prediction)  # what LLaVA uploads
        result = submitted.replace("\n", " ").replace("\t", " ").strip()
        truth = [str(a).replace("\n", " ").replace("\t", " ").strip() for a in question["answers"]]
        if len(set(truth)) > 1:  # the official evaluator normalises only where the annotators disagree
            truth = [digits_articles(punctuation(a)) for a in truth]
            result = digits_articles(punctuation(result))
        return Scored(result, leave_one_out([a == result for a in truth]))

    def problems(self, question):
        answers = question.get("answers")
        if not isinstance(answers, list) or not answers:
            return ["answers: needs the annotators' answers (a list; VQAv2 has ten)"]
        return []


@register
class TextVQA(Scorer):
    name, order = "textvqa", 12
    summary = "EvalAI's processor on the answer and the ten references, min(matches / 3, 1) over the leave-one-out sets"
    reference = "LLaVA llava/eval/eval_textvqa.py (m4c_evaluator.TextVQAAccuracyEvaluator)"
    needs = ("answers",)
    suffix = SHORT

    def read(self, prediction, question, rng):
        parsed = evalai_normalise(prediction)
        truth = [evalai_normalise(str(a)) for a in question["answers"]]
        return Scored(parsed, leave_one_out([a == parsed for a in truth]) if parsed in truth else 0.0)

    def problems(self, question):
        answers = question.get("answers")
        if not isinstance(answers, list) or len(answers) != ANNOTATORS:
            return [f"answers: needs the ten annotators' answers (got "
                    f"{len(answers) if isinstance(answers, list) else 'none'}); the evaluator requires ten"]
        return []

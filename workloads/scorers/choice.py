"""Multiple-choice benchmarks, each reading the chosen option as its reference does.

    scienceqa  LLaVA's llava/eval/eval_science_qa.py: the answer is a letter A–E, or starts with a
               letter and ". ", or says "The answer is X." exactly once; anything else fails
    mmbench    MMBench's circular evaluation as lmms-eval 0.7.3 runs it without a judge model
               (mmbench_en_dev_static): OpenCompass's rules (a letter alone or in "(B)", "B.", "B:"…,
               else exactly one option's text in the answer), else lmms-eval's extract_mcq_answer; a
               question counts only if every rotation of its options (indices ≡ mod 10⁶) is right
    ai2d       lmms-eval's ai2d: a leading "X." gives the letter, else the whole answer; equal to the
               letter ignoring case and punctuation
"""

from __future__ import annotations

import re
import string
from collections import defaultdict

from .base import LETTER, LETTERS, BenchmarkScore, Scored, Scorer, choice_problems, options_of, register

SQA_OPTIONS = ("A", "B", "C", "D", "E")
CIRCULAR = 1_000_000  # MMBench: index ≥ 10⁶ is a rotation of index mod 10⁶


@register
class ScienceQA(Scorer):
    name, order = "scienceqa", 30
    summary = "a letter A-E, a letter then '. ', or 'The answer is X.' once (LLaVA's parser); else wrong"
    reference = "LLaVA llava/eval/eval_science_qa.py"
    needs = ("options", "answer")
    suffix = LETTER
    max_new_tokens = 1024  # model_vqa_science

    def read(self, prediction, question, rng):
        if prediction in SQA_OPTIONS:
            letter = prediction
        elif len(prediction) >= 3 and prediction[0] in SQA_OPTIONS and prediction[1:3] == ". ":
            letter = prediction[0]
        else:
            found = re.findall(r"The answer is ([A-Z]).", prediction)
            letter = found[0] if len(found) == 1 else "FAILED"
        options = options_of(question)
        picked = SQA_OPTIONS.index(letter) if letter in SQA_OPTIONS[:len(options)] else -1
        return Scored(letter, float(picked == LETTERS.index(str(question["answer"]).strip().upper())))

    def problems(self, question):
        return choice_problems(question)


def can_infer_option(answer: str) -> str | None:
    """OpenCompass's letter rule (lmms-eval MMBench_Evaluator.can_infer_option): one of A–E standing
    alone among the words (not a likely quantifier "A" in a longer answer), else exactly one in a
    wrapping such as "B.", "(B)", ":B"."""
    choices = "ABCDE"
    splits = [x.strip() for x in answer.split()]

    def count(prefix: str = "", suffix: str = "") -> int:
        return sum(prefix + c + suffix in splits for c in choices)

    if count() == 1:
        for ch in choices:
            if "A" in splits and len(splits) > 3:
                break
            if ch in splits:
                return ch
    for prefix, suffix in (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
                           (":", ""), (":", ","), (":", "."), (":", ")"), (":", ").")):
        if count(prefix, suffix) == 1:
            for ch in choices:
                if prefix + ch + suffix in splits:
                    return ch
    return None


def can_infer_text(answer: str, choices: dict[str, str]) -> str | None:
    """Exactly one option's text inside the answer (lower-cased)."""
    lowered = answer.lower()
    found = [k for k, text in choices.items() if str(text).lower() in lowered]
    return found[0] if len(found) == 1 else None


PHRASES = ("the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
           "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
           "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
           "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは")
PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
            "space": 2, "fallback": 0}


def extract_mcq_answer(response: str, choices: list[str]) -> str:
    """lmms-eval's _task_utils/mcq_extract.extract_mcq_answer: every way of writing a letter found,
    the highest-priority format's last occurrence wins."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    found: list[tuple[str, int, str]] = []
    for fmt, wrap in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                      ("space", "{} ")):
        found += [(ch, text.rfind(wrap.format(ch)), fmt) for ch in choices if wrap.format(ch) in text]
    lowered = text.lower()
    for phrase in PHRASES:
        at = lowered.find(phrase)
        if at != -1:
            for ch in choices:
                pos = text.find(ch, at + len(phrase))
                if pos != -1:
                    found.append((ch, pos, "phrase"))
    stripped = text.strip()
    found += [(ch, 0, "start") for ch in choices
              if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha())]
    found += [(ch, len(text) - 1, "end") for ch in choices
              if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha())]
    if not found:
        found = [(ch, text.rfind(ch), "fallback") for ch in choices if ch in text]
    if not found:
        return ""
    found.sort(key=lambda x: (PRIORITY.get(x[2], 0), x[1]), reverse=True)
    return found[0][0]


@register
class MMBench(Scorer):
    name, order = "mmbench", 31
    summary = ("OpenCompass's letter and option-text rules, else lmms-eval's extraction; a question counts if "
               "every rotation of its options is right (circular evaluation)")
    reference = "lmms-eval 0.7.3 tasks/mmbench (mmbench_en_dev_static: MMBench_Evaluator without a judge model)"
    needs = ("options", "answer")
    suffix = LETTER
    max_new_tokens = 1024  # model_vqa_mmbench

    def prompt(self, question, suffix=None):
        text = str(question["text"])
        hint = question.get("hint")
        if hint not in (None, "") and str(hint).lower() not in ("nan", "none"):
            text = f"{hint}\n{text}"
        text += "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options_of(question)))
        return text + (self.suffix if suffix is None else suffix)

    def read(self, prediction, question, rng):
        choices = {LETTERS[i]: o for i, o in enumerate(options_of(question)[:4])}  # MMBench's A–D
        letter = can_infer_option(prediction) or can_infer_text(prediction, choices) \
            or extract_mcq_answer(prediction, sorted(choices)) or None
        return Scored(letter, float(letter == str(question["answer"]).strip().upper()))

    def group(self, question):
        if "group" in question:
            return str(question["group"])
        index = question.get("index", question.get("question_id"))
        return str(int(index) % CIRCULAR) if str(index).lstrip("-").isdigit() else str(index)

    def aggregate(self, questions, scored):
        rounds: dict[str, list[float]] = defaultdict(list)
        for q, s in zip(questions, scored):
            rounds[self.group(q)].append(s.score)
        hits = [float(all(v)) for v in rounds.values()]
        single = sum(s.score for s in scored) / len(scored) if scored else 0.0
        return BenchmarkScore(sum(hits) / len(hits) if hits else 0.0,
                              {"circular_accuracy": sum(hits) / len(hits) if hits else 0.0, "single_pass": single})

    def problems(self, question):
        return choice_problems(question)


@register
class AI2D(Scorer):
    name, order = "ai2d", 32
    summary = "a leading 'X.' gives the letter, else the whole answer; equal to the letter, ignoring case and punctuation"
    reference = "lmms-eval 0.7.3 tasks/ai2d (MultiChoiceRegexFilter, exact_match ignoring case and punctuation)"
    needs = ("options", "answer")
    suffix = LETTER

    def prompt(self, question, suffix=None):
        listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options_of(question)))
        return f"{question['text']}\n{listed}" + (self.suffix if suffix is None else suffix)

    def read(self, prediction, question, rng):
        m = re.match(r"^\s*([A-Z])\.", prediction)
        filtered = m.group(1) if m else prediction
        table = str.maketrans("", "", string.punctuation)
        parsed = filtered.lower().translate(table)
        return Scored(parsed, float(parsed == str(question["answer"]).strip().lower().translate(table)))

    def problems(self, question):
        return choice_problems(question)

"""Benchmarks with their own parsers: MMMU, ChartQA, MathVista.

    mmmu       MMMU's own evaluation (MMMU-Benchmark/MMMU eval_utils, as LLaVA-family code carries it:
               CircleRadon/TokenPacker llava/eval/mmmu): a multiple-choice answer read from "(B)", a
               letter between spaces, or (in a longer answer) an option's text, the last one found
               winning, else a letter drawn at random (seed 42, drawn in the file's order); an open
               answer's key phrases and numbers, matched against the reference(s)
    chartqa    lmms-eval's relaxed accuracy (from Qwen-VL): a number within 5 % of the reference
               (percentages as fractions), anything else equal ignoring case
    mathvista  lmms-eval's MathVista without its judge model: an answer that is a choice, an integer
               or a float as asked, or 'The answer is "X".'; a choice letter becomes its option,
               anything else the option nearest by edit distance; numbers rounded to the precision
               asked. A judge model (GPT) would also read answers buried in sentences — this rule
               scores those wrong where a judged run may count them
"""

from __future__ import annotations

import ast
import re

from .base import LETTER, LETTERS, SHORT, Scored, Scorer, register

# ---- MMMU


def mmmu_options(question: dict) -> list[str]:
    options = question.get("options")
    if isinstance(options, str):  # MMMU's dataset keeps them as a Python list literal
        options = ast.literal_eval(options)
    return [str(o) for o in options or []]


def parse_multi_choice(response: str, all_choices: list[str], index2ans: dict[str, str], rng) -> str:
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, with_bracket = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    with_bracket = bool(candidates)
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [index for index, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates
    if not candidates:
        return rng.choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if index_ans:
        starts = [response.rfind(f"({c})" if with_bracket else f" {c} ") for c in candidates]
    else:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[max(range(len(starts)), key=lambda i: (starts[i], -i))]


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize(text: str) -> list:
    text = text.strip()
    if is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def key_responses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    found = []
    for i, part in enumerate(parts):
        if i == len(parts) - 1:
            indicators.append("=")  # the last sentence may be an equation
        shortest = None
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
            found.append(shortest)
    return found or [response]


def parse_open(response: str) -> list:
    keys = key_responses(response)
    candidates = keys + [n for k in keys for n in extract_numbers(k)]
    out: list = []
    for c in candidates:
        out.extend(normalize(c))
    return list(dict.fromkeys(out))  # the reference keeps a set; order does not change the verdict


def open_correct(gold, parsed: list) -> bool:
    golds = gold if isinstance(gold, list) else [gold]
    norm = [n for g in golds for n in normalize(str(g))]
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(n, str) and n in pred for n in norm):
                return True
        elif pred in norm:
            return True
    return False


@register
class MMMU(Scorer):
    name, order = "mmmu", 40
    summary = "MMMU's parser: a chosen letter (else a seeded random one) or an open answer's key phrases and numbers"
    reference = "MMMU-Benchmark/MMMU eval_utils.py (as in CircleRadon/TokenPacker llava/eval/mmmu)"
    needs = ("question_type", "answer")

    def prompt(self, question, suffix=None):
        if question["question_type"] == "multiple-choice":
            listed = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(mmmu_options(question)))
            return f"{question['text']}\n\n{listed}" + ("\n" + LETTER if suffix is None else suffix)
        return f"{question['text']}" + ("\n" + SHORT if suffix is None else suffix)

    def read(self, prediction, question, rng):
        if question["question_type"] == "multiple-choice":
            options = mmmu_options(question)
            letters = [LETTERS[i] for i in range(len(options))]
            parsed = parse_multi_choice(prediction, letters, dict(zip(letters, options)), rng)
            gold = question["answer"]
            return Scored(parsed, float(parsed in gold if isinstance(gold, list) else parsed == gold))
        parsed = parse_open(prediction)
        return Scored([str(p) for p in parsed], float(open_correct(question["answer"], parsed)))

    def problems(self, question):
        out = super().problems(question)
        kind = question.get("question_type")
        if kind not in (None, "multiple-choice", "open"):
            out.append(f"question_type: {kind!r} is neither 'multiple-choice' nor 'open'")
        if kind == "multiple-choice":
            try:
                if len(mmmu_options(question)) < 2:
                    out.append("options: a multiple-choice question needs at least two options")
            except (ValueError, SyntaxError):
                out.append("options: not a list of options")
        return out


# ---- ChartQA


def relaxed(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    def number(text: str):
        try:
            return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            return None

    p, t = number(prediction), number(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= tolerance
    return prediction.lower() == target.lower()


@register
class ChartQA(Scorer):
    name, order = "chartqa", 41
    summary = "relaxed accuracy: a number within 5 % of the reference, else equal ignoring case"
    reference = "lmms-eval 0.7.3 tasks/chartqa (relaxed_correctness, from Qwen-VL)"
    suffix = "\nAnswer the question with a single word."

    def read(self, prediction, question, rng):
        return Scored(prediction, float(relaxed(prediction, str(question["answer"]))))


# ---- MathVista


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def mathvista_extract(response: str, q: dict) -> str:
    if not response:
        return ""
    if q["question_type"] == "multi_choice" and response in (q.get("choices") or []):
        return response
    if q["answer_type"] == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if q["answer_type"] == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    m = re.search(r'The answer is "(.*)"\.', response)
    return m.group(1) if m else ""  # no judge model: nothing else is read


def mathvista_normalize(extraction, q: dict):
    choices, kind = q.get("choices") or [], q["answer_type"]
    if q["question_type"] == "multi_choice":
        extraction = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        letters = [LETTERS[i] for i in range(len(choices))]
        if extraction in letters:
            return choices[letters.index(extraction)]
        distances = [edit_distance(extraction, c) for c in choices]
        return choices[distances.index(min(distances))]
    try:
        if kind == "integer":
            return str(int(float(extraction)))
        if kind == "float":
            return str(round(float(extraction), int(q.get("precision") or 0)))
    except (ValueError, TypeError, OverflowError):
        return None
    return str(extraction) if kind == "list" else extraction


@register
class MathVista(Scorer):
    name, order = "mathvista", 42
    summary = "a choice, an integer or a float as asked, or 'The answer is \"X\".' (no judge model); compared as text"
    reference = "lmms-eval 0.7.3 tasks/mathvista (MathVistaEvaluator with quick_extract, no judge model)"
    needs = ("question_type", "answer_type", "answer")

    def prompt(self, question, suffix=None):
        """MathVista's format prompt (lmms-eval's shot_type format-prompt)."""
        kind, precision = question["answer_type"], int(question.get("precision") or 0)
        text = str(question["text"]) + (f" (Unit: {question['unit']})" if question.get("unit") else "")
        choices = question.get("choices") or []
        listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
        if question["question_type"] == "multi_choice":
            hint = LETTER.strip()
        else:
            hint = {"integer": "Answer the question using a single integer number.",
                    "list": "Answer the question using a Python list."}.get(kind, "")
            if kind == "float" and precision in (1, 2):
                places = "one decimal place" if precision == 1 else "two decimal places"
                hint = f"Answer the question using a single floating-point number with {places}."
        if suffix is not None:
            hint = suffix.strip()
        return "\n".join(e for e in (text, listed, hint) if e).strip()

    def read(self, prediction, question, rng):
        normalised = mathvista_normalize(mathvista_extract(prediction, question), question)
        truth = question["answer"]
        return Scored(normalised, float(str(normalised).strip() == str(truth).strip()))

    def problems(self, question):
        out = super().problems(question)
        if question.get("question_type") == "multi_choice" and len(question.get("choices") or []) < 2:
            out.append("choices: a multi_choice question needs its choices")
        if question.get("answer_type") not in (None, "text", "integer", "float", "list"):
            out.append(f"answer_type: {question['answer_type']!r} is not text, integer, float or list")
        return out

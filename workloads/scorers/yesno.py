"""Yes/no benchmarks, each by its own reading of an answer.

    pope  LLaVA's llava/eval/eval_pope.py: the answer's first sentence (up to its first full stop),
          commas dropped, split on spaces: "No", "no" or "not" among the words reads no, anything
          else yes. Accuracy over the questions; F1, precision, recall (yes is the positive class)
          and the share of yes beside it, per category too (random, popular, adversarial)
    mme   lmms-eval's mme (from Otter's evaluation): "yes"/"no" (or "y"/"n"), else the first four
          characters decide; per category the mean over images of acc + acc+ (both of an image's
          questions right), each ×100; perception sums ten categories (max 2,000), cognition four
          (max 800). The accuracy in [0, 1] is their sum over its maximum, 200 per category present
"""

from __future__ import annotations

from collections import defaultdict

from .base import SHORT, BenchmarkScore, Scored, Scorer, register

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
                  "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_REPLACED = " Please answer yes or no."  # lmms-eval swaps MME's own instruction for LLaVA's


def pope_reads(prediction: str) -> str:
    text = prediction
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


@register
class POPE(Scorer):
    name, order = "pope", 20
    summary = "the first sentence reads no if it has the word No, no or not, else yes; accuracy, and F1 beside it"
    reference = "LLaVA llava/eval/eval_pope.py"
    suffix = SHORT

    def read(self, prediction, question, rng):
        parsed = pope_reads(prediction)
        truth = "no" if question["answer"] == "no" else "yes"  # the reference's labels: anything else is yes
        return Scored(parsed, float(parsed == truth))

    def aggregate(self, questions, scored):
        details = _binary(questions, scored, "")
        for category in sorted({str(q["category"]) for q in questions if q.get("category")}):
            picked = [(q, s) for q, s in zip(questions, scored) if str(q.get("category")) == category]
            details.update(_binary([q for q, _ in picked], [s for _, s in picked], f"{category}/"))
        return BenchmarkScore(details["accuracy"], details)


def _binary(questions, scored, prefix: str) -> dict[str, float]:
    pred = [s.parsed == "yes" for s in scored]
    label = [q["answer"] != "no" for q in questions]
    tp = sum(p and t for p, t in zip(pred, label))
    fp = sum(p and not t for p, t in zip(pred, label))
    fn = sum(t and not p for p, t in zip(pred, label))
    n = len(pred)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {f"{prefix}accuracy": sum(p == t for p, t in zip(pred, label)) / n if n else 0.0,
            f"{prefix}f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            f"{prefix}precision": precision, f"{prefix}recall": recall,
            f"{prefix}yes_ratio": sum(pred) / n if n else 0.0}


def mme_reads(prediction: str) -> str:
    text = prediction.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


@register
class MME(Scorer):
    name, order = "mme", 21
    summary = ("yes/no from the answer's first characters; per category acc + acc+ (both questions of an image "
               "right), perception and cognition summed; accuracy = their sum over its maximum")
    reference = "lmms-eval 0.7.3 tasks/mme (MME's own calculation)"
    needs = ("answer", "category", "group")
    suffix = SHORT

    def prompt(self, question, suffix=None):
        text = str(question["text"]).strip()
        suffix = self.suffix if suffix is None else suffix
        return text.replace(MME_REPLACED, "") + suffix if suffix else text

    def read(self, prediction, question, rng):
        parsed = mme_reads(prediction)
        return Scored(parsed, float(parsed == str(question["answer"]).lower().strip().replace(".", "")))

    def group(self, question):
        return str(question["group"])

    def aggregate(self, questions, scored):
        by_category: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for q, s in zip(questions, scored):
            by_category[str(q["category"])][self.group(q)].append(s.score)
        per_category = {}
        for category, images in by_category.items():
            per_category[category] = sum(100.0 * sum(v) / len(v) + 100.0 * (sum(v) == len(v))
                                         for v in images.values()) / len(images)
        perception = sum(v for c, v in per_category.items() if c in MME_PERCEPTION)
        cognition = sum(v for c, v in per_category.items() if c not in MME_PERCEPTION)
        details = {"perception": perception, "cognition": cognition, "total": perception + cognition,
                   **{f"category/{c}": v for c, v in sorted(per_category.items())}}
        top = 200.0 * len(per_category)
        return BenchmarkScore((perception + cognition) / top if top else 0.0, details)

    def problems(self, question):
        out = super().problems(question)
        answer = str(question.get("answer", "")).lower().strip().replace(".", "")
        if "answer" in question and answer not in ("yes", "no"):
            out.append(f"answer: {question['answer']!r} is not Yes or No")
        return out

    def group_problems(self, questions):
        count: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(questions):
            if "group" in q:
                count[str(q["group"])].append(i)
        return [(lines[0], f"group: image {g!r} has {len(lines)} question(s); MME asks two of each image (acc+)")
                for g, lines in count.items() if len(lines) != 2]

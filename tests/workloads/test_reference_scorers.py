"""Each benchmark's scorer gives its reference's score on hard answers — numbers and number words,
articles, punctuation, every way of writing a letter, yes/no variants, relaxed numbers with units
and percent — and its group rules (MME's acc+, MMBench's circular evaluation) their reference's
benchmark score.

The expected values (tests/fixtures/reference/scores.json) were computed by running the reference
code itself — LLaVA's evaluation scripts (locuslab/llava-token-compression @ bdedebd), the official
VQA evaluator (GT-Vision-Lab/VQA @ a013f00), lmms-eval 0.7.3's task rules and MMMU's own
evaluation — with tests/fixtures/reference/make_golden_scores.py, which says how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.scorers import SCORERS, evalai_normalise

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "scores.json").read_text())
FAMILIES = {"vqa": ("gqa", "textvqa", "vqav2"), "yes/no": ("pope", "mme"), "choice": ("scienceqa", "mmbench", "ai2d"),
            "mmmu": ("mmmu",), "relaxed numbers": ("chartqa",), "mathvista": ("mathvista",)}


def test_every_rule_family_has_at_least_sixty_hard_answers_with_the_reference_named():
    for family, names in FAMILIES.items():
        assert min(len(GOLDEN["cases"][n]) for n in names) >= 60, family
    assert {"llava", "vqa", "lmms_eval", "mmmu"} <= set(GOLDEN["provenance"])
    assert set(GOLDEN["cases"]) == {n for names in FAMILIES.values() for n in names}


@pytest.mark.parametrize("name", sorted(GOLDEN["cases"]))
def test_each_answer_scores_as_its_reference_scores_it(name):
    cases = GOLDEN["cases"][name]
    scorer = SCORERS[name]
    scored = scorer.score_all([c["question"] for c in cases], [c["prediction"] for c in cases])  # in order: MMMU's draws
    wrong = [(c["prediction"], c["question"].get("answer"), c["score"], s.score)
             for c, s in zip(cases, scored) if abs(c["score"] - s.score) > 1e-9]
    assert wrong == [], f"{name}: {len(wrong)} of {len(cases)} differ (prediction, truth, reference, vlmscale)"


def test_evalai_processing_is_the_references_to_the_character():
    for prediction, processed in GOLDEN["evalai"].items():
        assert evalai_normalise(prediction) == processed, prediction


def test_pope_accuracy_is_llavas():
    cases = GOLDEN["cases"]["pope"]
    _, result = SCORERS["pope"].evaluate([c["question"] for c in cases], [c["prediction"] for c in cases])
    assert result.accuracy == pytest.approx(GOLDEN["aggregates"]["pope_accuracy"], abs=1e-12)
    assert 0 < result.details["f1"] < 1 and 0 < result.details["yes_ratio"] < 1


def test_mme_sums_acc_and_acc_plus_per_category_as_its_reference():
    agg = GOLDEN["aggregates"]["mme"]
    items = agg["items"]
    _, result = SCORERS["mme"].evaluate([i["question"] for i in items], [i["prediction"] for i in items])
    assert result.details["perception"] == pytest.approx(agg["perception"])
    assert result.details["cognition"] == pytest.approx(agg["cognition"])
    categories = {i["question"]["category"] for i in items}
    assert result.accuracy == pytest.approx((agg["perception"] + agg["cognition"]) / (200 * len(categories)))


def test_mmbench_counts_a_question_only_if_every_rotation_is_right():
    agg = GOLDEN["aggregates"]["mmbench"]
    items = agg["items"]
    _, result = SCORERS["mmbench"].evaluate([i["question"] for i in items], [i["prediction"] for i in items])
    assert result.accuracy == pytest.approx(agg["circular_accuracy"]) == pytest.approx(2 / 3)
    assert result.details["single_pass"] == pytest.approx(8 / 9)  # one rotation of eight wrong, the single one right


@pytest.mark.parametrize("name,question,problem", [
    ("textvqa", {"text": "q", "answers": ["a"] * 9}, "answers: needs the ten annotators' answers (got 9)"),
    ("vqav2", {"text": "q", "answer": "a"}, "answers: needs the annotators' answers"),
    ("mmbench", {"text": "q", "answer": "B"}, "options: needs a list of at least 2 options (got None)"),
    ("scienceqa", {"text": "q", "options": ["x", "y"], "answer": "C"}, "answer: 'C' is not the letter of one of its 2"),
    ("mme", {"text": "q", "answer": "maybe", "category": "count", "group": "1.png"}, "answer: 'maybe' is not Yes or No"),
    ("mmmu", {"text": "q", "answer": "A", "question_type": "essay"}, "question_type: 'essay' is neither"),
    ("gqa", {"text": "q"}, "answer: missing"),
])
def test_a_line_without_what_its_rule_reads_is_named(name, question, problem):
    assert any(p.startswith(problem) for p in SCORERS[name].problems(question)), SCORERS[name].problems(question)


def test_an_mme_image_with_one_question_is_named():
    questions = [{"text": "q", "answer": "yes", "category": "count", "group": "a.png"},
                 {"text": "q", "answer": "no", "category": "count", "group": "a.png"},
                 {"text": "q", "answer": "no", "category": "count", "group": "b.png"}]
    assert SCORERS["mme"].group_problems(questions) == [
        (2, "group: image 'b.png' has 1 question(s); MME asks two of each image (acc+)")]

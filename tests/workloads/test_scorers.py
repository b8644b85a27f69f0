"""Each benchmark's own rule, on hand-computed cases."""

import pytest

from workloads.scorers import SCORERS, vqa_normalise


@pytest.mark.parametrize("raw,normal", [
    ("Two dogs.", "2 dogs"), ("The Red car", "red car"), ("an apple", "apple"), ("dont", "don't"),
    ("yes!", "yes"), ("3,000", "3000"), ("x-ray", "x ray"), ("a-b", "b"), (" 10\n", "10"), ("isnt it", "isn't it"), ("none", "0"),
])
def test_vqa_normalisation(raw, normal):
    assert vqa_normalise(raw) == normal


def test_vqa_accuracy_is_three_matching_annotators_or_a_share_of_them():
    s = SCORERS["vqa_accuracy"]
    ten = ["two", "2", "2", "two dogs", "3", "2", "two", "2 dogs", "two", "3"]  # "2": 7 of 10 after normalisation
    assert s.score("Two.", {"answers": ten}) == 1.0
    assert s.score("3", {"answers": ten}) == pytest.approx(2 / 3)
    assert s.score("2 dogs", {"answers": ten}) == pytest.approx(2 / 3)  # "two dogs" normalises to "2 dogs" too
    assert s.score("cat", {"answers": ten}) == 0.0
    assert s.score("stop", {"answer": "Stop"}) == pytest.approx(1 / 3)  # one reference: one annotator


def test_exact_match_ignores_case_space_and_a_final_full_stop():
    s = SCORERS["exact_match"]
    assert s.score(" Left. ", {"answer": "left"}) == 1.0
    assert s.score("on the left", {"answer": "left"}) == 0.0


@pytest.mark.parametrize("prediction,score", [("B", 1), ("(B)", 1), ("B. a dog", 1), ("The answer is B", 1),
                                              ("a dog", 1), ("A dog.", 1), ("A", 0), ("C. a cow", 0), ("", 0)])
def test_multiple_choice_by_letter_or_option_text(prediction, score):
    q = {"text": "What animal is it?", "options": ["a cat", "a dog", "a cow"], "answer": "B"}
    assert SCORERS["multiple_choice"].score(prediction, q) == score


def test_multiple_choice_prompt_lists_the_options():
    q = {"text": "What animal is it?", "options": ["a cat", "a dog"], "answer": "B"}
    assert SCORERS["multiple_choice"].prompt(q) == ("What animal is it?\nA. a cat\nB. a dog\n"
                                                    "Answer with the option's letter from the given choices directly.")


@pytest.mark.parametrize("prediction,answer,score", [("Yes, there is.", "yes", 1), ("no", "yes", 0),
                                                     ("There is no dog.", "no", 1), ("maybe", "no", 0)])
def test_yes_no(prediction, answer, score):
    assert SCORERS["yes_no"].score(prediction, {"answer": answer}) == score

"""The study's recipe as its scripts have it: the vicuna_v1 conversation to the character, the image
placed as LLaVA places it in training and evaluation alike, and QueCC's question text as the
reference forms it. The expected prompts and texts (tests/fixtures/reference/prompts.json) were
produced by running the study's code (locuslab/llava-token-compression @ bdedebd) — its
preprocess_multimodal and preprocess_v1, get_input_ids(..., "vicuna_v1") and
prepare_inputs_labels_for_multimodal — with tests/fixtures/reference/make_golden_text.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.benchmarks import _sample
from workloads.config import BenchmarkConfig
from workloads.data.chat import VicunaV1, conversation_format
from workloads.data.llava import conversation
from workloads.data.synthetic import Sample

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "prompts.json").read_text())
SEP2 = "</s>"  # the reference's literal turn separator; vlmscale closes a turn with the tokenizer's eos


def _text(sample: Sample, tokenizer=None) -> str:
    """The conversation as one string, each labelled answer closed as the reference closes it."""
    return "".join(text + (SEP2 if labelled else "") for text, labelled in VicunaV1().segments(sample, tokenizer))


@pytest.mark.parametrize("case", GOLDEN["training"], ids=lambda c: c["conversations"][0]["value"][:24])
def test_a_training_record_is_laid_out_as_the_studys_trainer_lays_it(case):
    sample = Sample(object(), conversation({"image": "x.png", "conversations": case["conversations"]}), "llava")
    assert _text(sample) == case["prompt"]
    assert VicunaV1().query(sample) == case["query"]


@pytest.mark.parametrize("case", GOLDEN["evaluation"], ids=lambda c: c["text"][:24])
def test_a_benchmark_question_is_asked_as_the_studys_evaluation_asks_it(case, tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    b = BenchmarkConfig("b", str(tmp_path / "q.jsonl"), "exact_match", str(tmp_path))
    sample = _sample({"image": "x.png", "text": case["text"]}, b, case["text"])
    first, labelled = VicunaV1().segments(sample, None)[0]
    assert not labelled and first == case["prompt"]
    assert VicunaV1().query(sample) == case["query"]


def test_vicuna_v1_is_chosen_by_name_and_starts_with_the_tokenizers_bos():
    fmt = conversation_format("vicuna_v1", "llava", tokenizer=None)
    assert isinstance(fmt, VicunaV1) and fmt.bos and fmt.query_special_tokens
    assert conversation_format("llava_v1", "llava", None).system.startswith("A chat between a curious human")

"""LLaVA-format data as researchers have it: JSON and JSONL, multi-turn and text-only records, the
LLM's chat template (or LLaVA's v1 conversation), the loss on assistant turns only, the image
first as LLaVA puts it, the tower's own image processor with pad-to-square, eval_size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.support.artifacts import bpe_tokenizer, llava_files, tiny_clip, tiny_llm
from workloads.data.batch import IGNORE, Collator, ProcessorTransform, transform_for
from workloads.data.chat import LlavaV1, conversation_format
from workloads.data.llava import LlavaDataset, LlavaFormatError, index
from workloads.tokenizer import pretrained_tokenizer


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("llava")
    tok_dir = bpe_tokenizer(d / "tok")
    return {"llm": tiny_llm(d / "llm", 32, 1, tok_dir), "clip": tiny_clip(d / "clip"), "data": llava_files(d / "data"),
            "plain_tok": bpe_tokenizer(d / "plain-tok", chat_template=False)}


def _answers(batch, i, tok):
    return tok.decode([t for t in batch.labels[i].tolist() if t != IGNORE])


def test_jsonl_and_json_are_indexed_alike_with_text_only_records(parts, tmp_path):
    jsonl = parts["data"]["instruct"]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    as_json = tmp_path / "same.json"
    as_json.write_text(json.dumps(records, indent=2))
    a, b = LlavaDataset(jsonl, parts["data"]["images"]), LlavaDataset(as_json, parts["data"]["images"])
    assert len(a) == len(b) == len(records) and [a.record(i) for i in range(len(a))] == records
    text_only = [i for i, r in enumerate(records) if "image" not in r]
    assert text_only and all(a[i].image is None for i in text_only)
    assert int((~index(jsonl).has_image).sum()) == len(text_only)
    assert len(LlavaDataset(jsonl, parts["data"]["images"], limit=5)) == 5  # eval_size


def test_the_chat_template_trains_the_assistant_turns_only_with_the_image_first(parts):
    tok = pretrained_tokenizer(str(parts["llm"]))
    ds = LlavaDataset(parts["data"]["instruct"], parts["data"]["images"])
    fmt = conversation_format("auto", "llava", tok)
    assert fmt.name == "chat_template"
    collate = Collator(tok, 4, transform_for(str(parts["clip"]), 32), fmt)
    sample = ds[0]  # "What color is the shape?\n<image>" then a second turn
    assert sample.question == "<image>\nWhat color is the shape?"  # moved to the front, as LLaVA's trainer does
    b = collate([sample])
    ids = b.input_ids[0].tolist()
    first = ids.index(b.image_token_id)
    assert ids[first:first + 4] == [b.image_token_id] * 4 and ids.count(b.image_token_id) == 4
    assert tok.decode(ids[first + 4:]).startswith("\nWhat color is the shape?")
    answers = _answers(b, 0, tok)
    assert sample.turns[0].answer in answers and "yes" in answers and "What color" not in answers
    assert answers.count("<|im_end|>") == 2  # each assistant turn learns to end itself


def test_llava_v1_without_a_chat_template_and_text_only_samples_in_a_batch(parts):
    tok = pretrained_tokenizer(str(parts["plain_tok"]))
    assert isinstance(conversation_format("auto", "llava", tok), LlavaV1)
    ds = LlavaDataset(parts["data"]["instruct"], parts["data"]["images"])
    text_only = next(ds[i] for i in range(len(ds)) if ds[i].image is None)
    collate = Collator(tok, 4, transform_for(str(parts["clip"]), 32), LlavaV1())
    b = collate([ds[0], text_only])
    assert b.image_mask.tolist() == [True, False]
    assert (b.input_ids[1] == b.image_token_id).sum() == 0 and (b.input_ids[0] == b.image_token_id).sum() == 4
    text = tok.decode(b.input_ids[0][b.attention_mask[0] == 1].tolist())
    assert text.startswith("A chat between a curious human") and "USER: <image>" in text
    assert "<image>\nWhat color is the shape? ASSISTANT: red<|endoftext|>USER:" in text
    assert _answers(b, 1, tok).strip().startswith("one")


def test_a_mixed_batch_trains_through_the_real_vlm(parts):
    from workloads.config import ModelConfig
    from workloads.model import build_vlm

    tok = pretrained_tokenizer(str(parts["llm"]))
    ds = LlavaDataset(parts["data"]["instruct"], parts["data"]["images"])
    model = build_vlm(ModelConfig(llm=str(parts["llm"]), vision=str(parts["clip"]), compressor="quecc",
                                  visual_tokens=4, kv_layers=(-2, -1)), tok)
    collate = Collator(tok, 4, transform_for(str(parts["clip"]), 32), conversation_format("auto", "llava", tok))
    batch = collate([ds[0], next(ds[i] for i in range(len(ds)) if ds[i].image is None), ds[2]])
    out = model(**batch.model_inputs())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.projector.net[0].weight.grad is not None
    only_text = collate([next(ds[i] for i in range(len(ds)) if ds[i].image is None)])
    assert torch.isfinite(model(**only_text.model_inputs()).loss)  # a batch without any image


def test_the_towers_own_processor_pads_to_a_square_in_its_mean_colour(parts):
    transform = transform_for(str(parts["clip"]), 32, "pad")
    assert isinstance(transform, ProcessorTransform)
    wide = np.zeros((10, 40, 3), np.uint8)  # black, 4:1
    x = transform(wide)
    assert x.shape == (3, 32, 32)
    mean = torch.tensor(transform.processor.image_mean).view(3, 1)
    assert torch.allclose(x[:, 0, :], torch.zeros(3, 32), atol=0.05)  # padding: the mean colour, normalised to 0
    assert (x[:, 16, :] < -1).all()  # the image itself: black, well below the mean
    assert mean.shape == (3, 1)
    square = transform_for(str(parts["clip"]), 32, "square")(wide)
    assert square.shape == (3, 32, 32) and (square[:, 0, :] < -1).all()  # cropped, not padded


def test_long_conversations_are_cut_after_the_image_never_inside_it(parts):
    tok = pretrained_tokenizer(str(parts["llm"]))
    ds = LlavaDataset(parts["data"]["instruct"], parts["data"]["images"])
    collate = Collator(tok, 16, transform_for(str(parts["clip"]), 32), conversation_format("auto", "llava", tok),
                       max_length=20)
    full, _, _ = Collator(tok, 16, collate.transform, collate.fmt).encode(ds[0])
    ids, labels, _ = collate.encode(ds[0])
    end_of_image = ids.index(collate.image_id) + 16
    assert len(full) > 40 and end_of_image > 20  # the cut would fall inside the image
    assert ids == full[:end_of_image] and len(labels) == len(ids) and ids.count(collate.image_id) == 16
    short = Collator(tok, 1, collate.transform, collate.fmt, max_length=30)
    assert len(short.encode(ds[0])[0]) == 30


def test_records_that_break_the_format_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]}))
    with pytest.raises(LlavaFormatError, match=r"bad.jsonl: line 1: conversations\[1\].from: 'human' where 'gpt' "
                                              r"belongs \(turns alternate human, gpt\)"):
        LlavaDataset(bad)
    cut = tmp_path / "cut.json"
    cut.write_text('[{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},\n {"conv')
    with pytest.raises(LlavaFormatError, match=r"cut.json: line 2: not valid JSON"):
        LlavaDataset(cut)


def test_each_stage_reads_its_images_as_it_says_and_evaluation_as_the_last(parts):
    """LLaVA-1.5's recipe: stage 1 images as they are (`square`: the processor's resize and crop),
    stage 2 padded to a square; the evaluation reads them as the model was last trained."""
    from workloads.config import CellConfig, DataConfig, ModelConfig, StageConfig, TrainConfig
    from workloads.train import stage_collators

    tok = pretrained_tokenizer(str(parts["llm"]))
    stages = (StageConfig("align", ("projector",), 2, 1e-3, 4, image_aspect_ratio="square"),
              StageConfig("instruct", ("projector", "llm"), 2, 1e-4, 4))
    cell = CellConfig(ModelConfig(llm=str(parts["llm"]), vision=str(parts["clip"])),
                      DataConfig(source="llava", llava_train=str(parts["data"]["instruct"]), image_aspect_ratio="pad"),
                      TrainConfig(stages=stages))
    collates = stage_collators(cell, stages, tok, 32, conversation_format("vicuna_v1", "llava", tok))
    assert collates["align"].transform.pad is False and collates["instruct"].transform.pad is True
    wide = np.zeros((10, 40, 3), np.uint8)
    assert not torch.equal(collates["align"].transform(wide), collates["instruct"].transform(wide))

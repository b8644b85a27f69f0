"""Real artifacts made in a test, as a researcher has them on disk: tiny Qwen2-style LLMs saved with
``save_pretrained``, a byte-level BPE tokenizer built with ``tokenizers`` (with a chat template),
a CLIP vision tower with its image processor, LLaVA-format caption JSON and instruction JSONL
with PNG images, and benchmark question files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("a red circle a blue square a green triangle a yellow cross on a white background how many shapes "
         "are there what color is the shape is there yes no one two three four left right top bottom image "
         "describe the picture answer with a single word or phrase A B C D option letter").split()


def bpe_tokenizer(directory: Path, chat_template: bool = True) -> Path:
    """A byte-level BPE tokenizer trained on a few sentences, saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(WORDS[i:i + 8]) for i in range(0, len(WORDS), 3)] * 4
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return directory


def tiny_llm(directory: Path, hidden: int, layers: int, tokenizer_dir: Path | None = None, seed: int = 0) -> Path:
    """A Qwen2 causal LM with random weights (and the tokenizer beside it), saved with save_pretrained."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer_dir = tokenizer_dir or bpe_tokenizer(directory.parent / f"{directory.name}-tokenizer")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def tiny_clip(directory: Path, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> Path:
    """A CLIP vision tower (4×4 patch grid by default) with its CLIP image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=image_size, patch_size=patch_size)
    CLIPVisionModel(config).save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(directory)
    return directory


COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (60, 100, 250)}


def _image(path: Path, colour: str, size: tuple[int, int]) -> None:
    from PIL import Image

    img = np.full((size[1], size[0], 3), 255, np.uint8)
    img[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = COLOURS[colour]
    Image.fromarray(img).save(path)


def llava_files(root: Path, n: int = 24) -> dict[str, Path]:
    """Images (of several aspect ratios), a caption JSON (stage 1), an instruction JSONL with
    multi-turn and text-only records (stage 2), and two benchmarks with different scorers."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)
    for i in range(n):
        _image(images / f"{i}.png", colours[i % 3], (40, 30) if i % 2 else (30, 40))
    captions = [{"id": f"c{i}", "image": f"{i}.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the picture."},
        {"from": "gpt", "value": f"a {colours[i % 3]} square"}]} for i in range(n)]
    (root / "captions.json").write_text(json.dumps(captions))
    lines = []
    for i in range(n):
        lines.append({"id": f"q{i}", "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "What color is the shape?\n<image>"},
            {"from": "gpt", "value": colours[i % 3]},
            {"from": "human", "value": "Is there a shape?"},
            {"from": "gpt", "value": "yes"}]})
        if i % 4 == 0:  # text-only records, as in LLaVA-665K's ShareGPT part
            lines.append({"id": f"t{i}", "conversations": [{"from": "human", "value": "how many shapes are there"},
                                                           {"from": "gpt", "value": "one"}]})
    (root / "instruct.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    colour_q = [{"question_id": i, "image": f"{i}.png", "text": "What color is the shape? Answer with a single word.",
                 "answer": colours[i % 3]} for i in range(8)]
    (root / "colour.jsonl").write_text("".join(json.dumps(x) + "\n" for x in colour_q))
    yes_no = [{"question_id": i, "image": f"{i}.png", "text": f"Is there a {colours[(i + i // 3) % 3]} shape?",
               "answer": "yes" if (i + i // 3) % 3 == i % 3 else "no"} for i in range(8)]
    (root / "pope.jsonl").write_text("".join(json.dumps(x) + "\n" for x in yes_no))
    return {"images": images, "captions": root / "captions.json", "instruct": root / "instruct.jsonl",
            "colour": root / "colour.jsonl", "pope": root / "pope.jsonl"}


def benchmark_releases(root: Path, n: int = 4) -> dict[str, tuple[list[Path], Path | None]]:
    """Tiny releases of the study's benchmarks, each in its own public layout (or LLaVA-1.5's), on
    the shape images: {kind: (the files `vlmscale convert-benchmark` takes, the image folder the
    release keeps its images in, or None when they are embedded)}."""
    import base64
    import io

    import pandas as pd
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        img = np.full((30, 40, 3), 255, np.uint8)
        img[8:22, 10:30] = COLOURS[colours[i % 3]]
        Image.fromarray(img).save(buf, format="PNG")
        return buf.getvalue()

    def images(folder: Path, names: list[str]) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(png(i))
        return folder

    out: dict[str, tuple[list[Path], Path | None]] = {}
    gqa = {f"q{i}": {"imageId": f"n{i}", "question": "What color is the shape?", "answer": colours[i % 3],
                     "types": {}} for i in range(n)}
    (root / "gqa").mkdir()
    (root / "gqa" / "testdev_balanced_questions.json").write_text(json.dumps(gqa))
    out["gqa"] = ([root / "gqa" / "testdev_balanced_questions.json"],
                  images(root / "gqa" / "images", [f"n{i}.jpg" for i in range(n)]))
    (root / "textvqa").mkdir()
    (root / "textvqa" / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": [
        {"question_id": i, "image_id": f"t{i}", "question": "What color is it?", "answers": [colours[i % 3]] * 10}
        for i in range(n)]}))
    out["textvqa"] = ([root / "textvqa" / "TextVQA_0.5.1_val.json"],
                      images(root / "textvqa" / "train_images", [f"t{i}.jpg" for i in range(n)]))
    (root / "pope" / "coco").mkdir(parents=True)
    for category in ("random", "adversarial"):
        lines = [{"question_id": i, "image": f"COCO_val2014_{i:012d}.jpg", "text": f"Is there a {colours[(i + 1) % 3]} "
                  "shape in the image?", "label": "yes" if i % 2 else "no"} for i in range(n)]
        (root / "pope" / "coco" / f"coco_pope_{category}.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out["pope"] = (sorted((root / "pope" / "coco").glob("*.json")),
                   images(root / "pope" / "val2014", [f"COCO_val2014_{i:012d}.jpg" for i in range(n)]))
    mme = root / "mme" / "MME_Benchmark_release_version"
    for category, nested in (("count", False), ("code_reasoning", True)):
        folder = mme / category
        qa = folder / "questions_answers_YN" if nested else folder
        pictures = folder / "images" if nested else folder
        qa.mkdir(parents=True, exist_ok=True)
        images(pictures, [f"{i}.png" for i in range(n // 2)])
        for i in range(n // 2):
            (qa / f"{i}.txt").write_text("Is there one shape? Please answer yes or no.\tYes\n"
                                         "Are there two shapes? Please answer yes or no.\tNo\n")
    out["mme"] = ([mme], None)
    rows = []
    for i in range(n):
        for r in range(2):  # each question and one rotation of its options
            options = ["a circle", "a square"] if r == 0 else ["a square", "a circle"]
            rows.append({"index": i + r * 1_000_000, "question": "What shape is it?", "hint": "nan" if i % 2 else "A drawing.",
                         "A": options[0], "B": options[1], "C": "", "D": "",
                         "answer": "AB"[options.index("a square")], "category": "shape", "l2-category": "x",
                         "image": base64.b64encode(png(i)).decode() if r == 0 else str(i), "source": "s", "split": "dev"})
    (root / "mmbench").mkdir()
    pd.DataFrame(rows).to_csv(root / "mmbench" / "mmbench_dev_en.tsv", sep="\t", index=False)
    out["mmbench"] = ([root / "mmbench" / "mmbench_dev_en.tsv"], None)
    sqa = root / "scienceqa"
    sqa.mkdir()
    problems = {str(i): {"question": "Which color is the shape?", "choices": colours, "answer": i % 3,
                         "hint": "A shape on white." if i % 2 else "", "image": "image.png" if i < n - 1 else None}
                for i in range(n)}
    (sqa / "problems.json").write_text(json.dumps(problems))
    (sqa / "pid_splits.json").write_text(json.dumps({"test": list(problems), "val": []}))
    out["scienceqa"] = ([sqa / "problems.json"], images(sqa / "images" / "test", [f"{i}/image.png" for i in range(n - 1)]))
    image_cell = [{"bytes": png(i), "path": f"{i}.png"} for i in range(n)]
    pd.DataFrame({"question": ["Which color is the shape?"] * n, "options": [colours] * n,
                  "answer": [str(i % 3) for i in range(n)], "image": image_cell}).to_parquet(root / "ai2d.parquet")
    out["ai2d"] = ([root / "ai2d.parquet"], None)
    pd.DataFrame({"id": [f"validation_Art_{i}" for i in range(n)],
                  "question": ["<image 1> What color is the shape?"] * (n - 1) + ["How many shapes are there?"],
                  "options": [repr(colours)] * (n - 1) + ["[]"],
                  "answer": ["ABC"[i % 3] for i in range(n - 1)] + ["1"],
                  "question_type": ["multiple-choice"] * (n - 1) + ["open"],
                  "image_1": image_cell, "image_2": [None] * n}).to_parquet(root / "mmmu.parquet")
    out["mmmu"] = ([root / "mmmu.parquet"], None)
    (root / "chartqa" / "test").mkdir(parents=True)
    (root / "chartqa" / "test" / "test_human.json").write_text(json.dumps(
        [{"imgname": f"c{i}.png", "query": "How many shapes are there?", "label": "1"} for i in range(n)]))
    out["chartqa"] = ([root / "chartqa" / "test" / "test_human.json"],
                      images(root / "chartqa" / "test" / "png", [f"c{i}.png" for i in range(n)]))
    pd.DataFrame({"pid": [str(i) for i in range(n)], "question": ["What color is the shape?", "How many shapes?"] * (n // 2),
                  "decoded_image": image_cell, "choices": [colours, None] * (n // 2), "unit": [None, ""] * (n // 2),
                  "precision": [None, None] * (n // 2), "answer": ["red", "1"] * (n // 2),
                  "question_type": ["multi_choice", "free_form"] * (n // 2),
                  "answer_type": ["text", "integer"] * (n // 2)}).to_parquet(root / "mathvista.parquet")
    out["mathvista"] = ([root / "mathvista.parquet"], None)
    return out

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

"""Tokenizers: the synthetic tasks' word-level one, or a pretrained model's own.

Both are ``PreTrainedTokenizerFast`` objects with an ``<image>`` placeholder token, a pad and an
eos token, so everything downstream has one code path.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
SYNTHETIC_SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", IMAGE_TOKEN)


def synthetic_tokenizer(extra_words: tuple[str, ...] = ("USER:", "ASSISTANT:")):
    """A whitespace word-level tokenizer over the synthetic tasks' closed vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .data.synthetic import vocabulary

    words = list(SYNTHETIC_SPECIALS) + sorted(set(vocabulary()) | set(extra_words))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def pretrained_tokenizer(name_or_path: str):
    """A Hugging Face tokenizer with an ``<image>`` token and a pad token added if missing."""
    from transformers import AutoTokenizer

    from .storage import localize

    tok = AutoTokenizer.from_pretrained(localize(name_or_path))
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(llm: str, source: str, override: str | None = None):
    from .presets import is_llm_preset

    if override:
        return pretrained_tokenizer(override)
    if is_llm_preset(llm):
        if source != "synthetic":
            raise ValueError(
                f"LLM preset {llm!r} has no tokenizer for {source!r} data; set data.tokenizer to a "
                "Hugging Face tokenizer name or path"
            )
        return synthetic_tokenizer()
    return pretrained_tokenizer(llm)


def image_token_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

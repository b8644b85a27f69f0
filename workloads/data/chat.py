"""Conversation formats: how a sample's turns become token ids, with the loss on the assistant's
answers only and V ``<image>`` placeholders where the image goes.

    plain          [bos] USER: <image>×V q₁ ASSISTANT: a₁ <eos> USER: q₂ ASSISTANT: a₂ <eos> …
                   (the synthetic tasks: the image right after the first USER:)
    vicuna_v1      LLaVA's ``vicuna_v1`` (``--version v1``), what the study's scripts train and evaluate
                   with: [bos] "A chat between a curious user and an artificial intelligence assistant.
                   The assistant gives helpful, detailed, and polite answers to the user's questions.
                   USER: <image>\nq₁ ASSISTANT: a₁<eos>USER: q₂ ASSISTANT: a₂<eos>…"
    llava_v1       LLaVA's ``llava_v1``: the same turns under its "curious human" system line, no bos
    chat_template  the LLM tokenizer's own chat template (apply_chat_template), turn by turn

LLaVA joins turns with Vicuna's literal ``</s>``; here it is the LLM tokenizer's eos token (the same
token for a Llama tokenizer; for Qwen's, "</s>" would be three tokens of text).

Each format returns the segments of a conversation — (text, is the answer) — and they are
tokenized one by one, so every answer token, and only those, is labelled. ``FORMATS`` is the
registry; ``data.conversation: auto`` takes the chat template when the tokenizer has one, else
llava_v1 (and plain for the synthetic tasks).
"""

from __future__ import annotations

from .synthetic import Sample

IMAGE_MARKER = "<image>"
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                   "helpful, detailed, and polite answers to the human's questions.")
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the user's questions.")


class ConversationFormat:
    name: str

    def segments(self, sample: Sample, tokenizer) -> list[tuple[str, bool]]:
        """(text, labelled) pieces of the conversation, in order; the image marker inside the text."""
        raise NotImplementedError

    bos: bool = False  # prepend the tokenizer's bos token
    eos_after_answer: bool = True  # the tokenizer's eos closes each answer (labelled)

    def stop_ids(self, tokenizer) -> list[int]:
        """Tokens that end a generated answer."""
        return [tokenizer.eos_token_id]

    query_special_tokens: bool = True  # the question QueCC reads is tokenized as a text of its own

    def query(self, sample: Sample) -> str:
        """The question a query-conditioned compressor reads (:func:`query_text`)."""
        return query_text(sample.question)


class Plain(ConversationFormat):
    name = "plain"
    bos = True
    query_special_tokens = False

    def query(self, sample):
        return without_marker(sample.question)  # the synthetic tasks' question words

    def __init__(self, user: str = "USER:", assistant: str = "ASSISTANT:"):
        self.user, self.assistant = user, assistant

    def segments(self, sample, tokenizer):
        # piece by piece, as the synthetic tasks were always tokenized (whatever the tokenizer)
        out = []
        for i, turn in enumerate(sample.turns):
            out.append((self.user, False))
            if i == 0 and sample.image is not None:
                out.append((IMAGE_MARKER, False))
            out += [(without_marker(turn.question), False), (self.assistant, False), (turn.answer, True)]
        return out


class LlavaV1(ConversationFormat):
    """LLaVA's two-separator conversation (SeparatorStyle.TWO): the system line, then each turn as
    ``USER: q ASSISTANT: a`` closed by the eos, the system and the first turn joined by a space."""

    name = "llava_v1"
    system = LLAVA_V1_SYSTEM

    def segments(self, sample, tokenizer):
        out = []
        for i, turn in enumerate(sample.turns):
            head = (self.system + " ") if i == 0 else ""
            out.append((f"{head}USER: {turn.question} ASSISTANT:", False))
            out.append((f" {turn.answer}", True))
        return out


class VicunaV1(LlavaV1):
    name = "vicuna_v1"
    system = VICUNA_V1_SYSTEM
    bos = True  # LLaVA tokenizes the whole prompt with the tokenizer's special tokens


class ChatTemplate(ConversationFormat):
    name = "chat_template"
    eos_after_answer = False  # the template closes each turn itself

    def segments(self, sample, tokenizer):
        messages: list[dict[str, str]] = []
        out, rendered = [], ""
        for turn in sample.turns:
            messages.append({"role": "user", "content": turn.question})
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            messages.append({"role": "assistant", "content": turn.answer})
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            if not (prompt.startswith(rendered) and full.startswith(prompt)):
                raise ValueError("the tokenizer's chat template does not render a conversation turn by turn "
                                 "(each render must extend the last); set data.conversation: llava_v1")
            out += [(prompt[len(rendered):], False), (full[len(prompt):], True)]
            rendered = full
        return out

    def stop_ids(self, tokenizer):
        """The eos, and the token the template closes an assistant turn with (e.g. <|im_end|>)."""
        messages = [{"role": "user", "content": "q"}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "x"}], tokenize=False)
        tail = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        answer = tokenizer("x", add_special_tokens=False)["input_ids"]
        closing = tail[len(answer):len(answer) + 1] if tail[:len(answer)] == answer else []
        return list(dict.fromkeys([tokenizer.eos_token_id, *closing]))


def without_marker(text: str) -> str:
    return " ".join(text.replace(IMAGE_MARKER, " ").split()) if IMAGE_MARKER in text else text


def image_first(text: str) -> str:
    """Where LLaVA puts the image of a turn that has one: ``<image>\n`` before the turn's text, every
    marker taken out of it and the text stripped (its training data and evaluation prompts alike)."""
    return (IMAGE_MARKER + "\n" + text.replace(IMAGE_MARKER, "").strip()).strip()


def query_text(question: str) -> str:
    """The question QueCC conditions on, as its reference forms it (llava_arch.py decodes the tokens
    after the image and keeps the text after the first line break, up to the first "ASSISTANT",
    stripped): the question after its image's line, newlines inside it kept."""
    after = question.rsplit(IMAGE_MARKER, 1)[-1]
    end = after.find("ASSISTANT")
    return after[after.find("\n") + 1: end if end >= 0 else len(after)].strip()


FORMATS: dict[str, type[ConversationFormat]] = {f.name: f for f in (Plain, VicunaV1, LlavaV1, ChatTemplate)}


def conversation_format(name: str, source: str, tokenizer, user: str = "USER:", assistant: str = "ASSISTANT:"):
    """The format ``name`` (``auto``: plain for synthetic data, else the chat template if the
    tokenizer has one, else llava_v1)."""
    if name == "auto":
        name = "plain" if source == "synthetic" else (
            "chat_template" if getattr(tokenizer, "chat_template", None) else "llava_v1")
    if name == "plain":
        return Plain(user, assistant)
    if name not in FORMATS:
        raise ValueError(f"unknown conversation format {name!r}; choose auto or one of {', '.join(FORMATS)}")
    return FORMATS[name]()

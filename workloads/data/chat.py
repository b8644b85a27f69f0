"""Conversation formats: how a sample's turns become token ids, with the loss on the assistant's
answers only and V ``<image>`` placeholders where the image goes.

    plain          [bos] USER: <image>×V q₁ ASSISTANT: a₁ <eos> USER: q₂ ASSISTANT: a₂ <eos> …
                   (the synthetic tasks: the image right after the first USER:)
    llava_v1       LLaVA-1.5's vicuna_v1 conversation: its system line, then
                   USER: q₁ ASSISTANT: a₁<eos>USER: q₂ …, the image where ``<image>`` stands in a question
    chat_template  the LLM tokenizer's own chat template (apply_chat_template), turn by turn

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


class Plain(ConversationFormat):
    name = "plain"
    bos = True

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
    name = "llava_v1"

    def segments(self, sample, tokenizer):
        out = []
        for i, turn in enumerate(sample.turns):
            head = (LLAVA_V1_SYSTEM + " ") if i == 0 else ""
            out.append((f"{head}USER: {turn.question} ASSISTANT:", False))
            out.append((f" {turn.answer}", True))
        return out


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


FORMATS: dict[str, type[ConversationFormat]] = {f.name: f for f in (Plain, LlavaV1, ChatTemplate)}


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

"""Chat prompts as token ids, with the tokenizer's control tokens in message text made inert.

A tokenizer matches its special and added tokens (``<|im_start|>``, ``<|im_end|>``...) anywhere
in the text it is given, and a chat template pastes message content into that text: user text
containing ``<|im_start|>system`` would otherwise open a real system turn (prompt-role injection).
Every such string in a message is broken with a zero-width space after its first character, so
it is tokenised as the plain characters a reader sees. The gateway's length check and the text
worker both format prompts here, so they count and run the same tokens.
"""

from __future__ import annotations

from typing import Any

#: inserted after the first character of a control-token string found in message text
ZWSP = "\u200b"


def control_strings(tokenizer: Any) -> tuple[str, ...]:
    """The strings the tokenizer turns into special or added tokens, longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    found.update(getattr(token, "content", str(token)) for token in added.values())
    return tuple(sorted((s for s in found if len(s) > 1), key=len, reverse=True))


def neutralise(text: str, controls: tuple[str, ...]) -> str:
    """`text` with every control-token string broken so that it no longer matches."""
    for control in controls:
        if control in text:
            text = text.replace(control, control[0] + ZWSP + control[1:])
    return text


def safe_messages(tokenizer: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    controls = control_strings(tokenizer)
    return [{**m, "content": neutralise(m["content"], controls)} for m in messages]


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a raw prompt (`/v1/completions`): no chat template, control strings made inert."""
    ids = tokenizer(neutralise(text, control_strings(tokenizer)), add_special_tokens=True)["input_ids"]
    return [int(i) for i in ids]


def chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` in the tokenizer's chat template, ending with the assistant turn."""
    ids = tokenizer.apply_chat_template(safe_messages(tokenizer, messages), add_generation_prompt=True,
                                        tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]

"""The context-length check of a chat: the gateway runs it before queueing (when it has the
tokenizer), the text worker again before generating; both answer `context_length_exceeded`."""

from __future__ import annotations


class ContextLengthExceeded(ValueError):
    """A prompt and its `max_tokens` do not fit the model's context; `param` names what to change."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def check_context(prompt_tokens: int | None, max_tokens: int | None, context_length: int | None) -> None:
    """Raise ContextLengthExceeded when `max_tokens` alone, or with the prompt, does not fit the
    context. An unknown number (None) is not checked."""
    if context_length is None or max_tokens is None:
        return
    if max_tokens >= context_length:
        raise ContextLengthExceeded(
            f"max_tokens={max_tokens} must be below the model's context of {context_length} tokens:"
            " lower max_tokens", "max_tokens")
    if prompt_tokens is not None and prompt_tokens + max_tokens > context_length:
        raise ContextLengthExceeded(
            f"the prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}; together they exceed the"
            f" model's context of {context_length} tokens: shorten the messages or lower max_tokens", "messages")


def check_characters(characters: int, context_length: int | None, chars_per_token: int) -> None:
    """Refuse, without tokenising, messages longer than any tokenisation of them could fit: no token
    spans more than `chars_per_token` characters (a generous bound), so more characters than the
    context times that can never fit. Run it before tokenising a prompt of unknown size."""
    if context_length is None:
        return
    bound = context_length * chars_per_token
    if characters > bound:
        raise ContextLengthExceeded(
            f"the messages are {characters} characters, more than the model's context of {context_length} tokens"
            f" can hold (at most {bound} characters): shorten the messages", "messages")

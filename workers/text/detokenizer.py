"""Incremental detokenisation: token ids in, text deltas out, never half a character.

Decoding token by token breaks multi-byte UTF-8 characters (an emoji is often 3-4 byte tokens)
and loses context-dependent spacing. Instead, each step decodes a short window twice: the tokens
already emitted since the last boundary (``prefix``) and the same window plus the new tokens
(``full``). The delta is ``full[len(prefix):]``, held back while it ends in U+FFFD (an incomplete
character). The window starts a few prompt tokens back so the first token decodes in context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Prompt tokens kept as left context for the first completion tokens.
PROMPT_CONTEXT_TOKENS = 5
_REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Text deltas for one sequence's completion tokens."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prompt_ids[-PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0  # start of the decode window
        self._read_offset = len(self._ids)  # end of what has been emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add one completion token; returns the newly complete text (may be "")."""
        self._ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """Text still held back at the end of generation (an incomplete character stays as U+FFFD)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        window = self._ids[self._prefix_offset :]
        if len(window) == self._read_offset - self._prefix_offset:
            return ""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(window)
        if len(full_text) <= len(prefix_text) or (full_text.endswith(_REPLACEMENT_CHAR) and not final):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]

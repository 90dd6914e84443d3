"""Incremental detokenisation with the real SmolLM2 tokenizer."""

from __future__ import annotations

import pytest

from workers.text.detokenizer import IncrementalDetokenizer
from infra.models.loader import LoadedModel

pytestmark = pytest.mark.slow  # loads a real model

TEXT = "Crème brûlée 🍮, naïve café — 日本語 👋🏽 done."


def test_incremental_pieces_reassemble_without_broken_characters(smollm: LoadedModel) -> None:
    tok = smollm.tokenizer
    prompt = smollm.format_chat([{"role": "user", "content": "hi"}])
    ids = tok(TEXT, add_special_tokens=False).input_ids
    assert any("\ufffd" in tok.decode([i]) for i in ids), "the text must contain multi-token characters"

    detok = IncrementalDetokenizer(tok, prompt)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == tok.decode(ids) == TEXT
    assert all("\ufffd" not in piece for piece in pieces)
    assert "" in pieces[:-1]  # some bytes were held back until their character completed


def test_flush_emits_an_incomplete_character_at_the_end(smollm: LoadedModel) -> None:
    tok = smollm.tokenizer
    ids = tok("🍮", add_special_tokens=False).input_ids
    assert len(ids) > 1
    detok = IncrementalDetokenizer(tok, [])
    assert [detok.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detok.flush().endswith("\ufffd")

"""Packed prefill layout: common prefix once, block causal mask, per-prompt positions."""

from __future__ import annotations

import pytest
import torch

from workers.text.engine import _pack_prompts, _packed_len


def test_common_prefix_is_packed_once_and_visible_to_every_prompt() -> None:
    pack = _pack_prompts([[1, 2, 3, 4], [1, 2, 5]], torch.device("cpu"))
    assert pack.shared == 2
    assert pack.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert pack.position_ids.tolist() == [[0, 1, 2, 3, 2]]
    assert pack.last_index.tolist() == [3, 4]
    mask = pack.attention_mask[0, 0].int().tolist()
    assert mask[1] == [1, 1, 0, 0, 0]  # prefix: causal within itself
    assert mask[3] == [1, 1, 1, 1, 0]  # first prompt: prefix + its own tokens
    assert mask[4] == [1, 1, 0, 0, 1]  # second prompt never sees the first one's tokens


def test_each_prompt_keeps_a_token_of_its_own() -> None:
    pack = _pack_prompts([[7, 8], [7, 8, 9]], torch.device("cpu"))
    assert pack.shared == 1
    assert pack.last_index.tolist() == [1, 3]
    assert pack.position_ids.tolist() == [[0, 1, 1, 2]]


def test_single_prompt_is_plain_causal() -> None:
    pack = _pack_prompts([[4, 5, 6]], torch.device("cpu"))
    assert pack.shared == 0
    assert torch.equal(pack.attention_mask[0, 0], torch.ones(3, 3, dtype=torch.bool).tril())


def test_packed_length_counts_the_common_prefix_once() -> None:
    assert _packed_len([[1, 2, 3, 4], [1, 2, 5]]) == 5
    assert _packed_len([[1, 2, 3]]) == 3


def test_a_cached_head_is_the_past_and_the_rest_is_laid_out_after_it() -> None:
    pack = _pack_prompts([[1, 2, 3, 4], [1, 2, 3, 5, 6]], torch.device("cpu"), cached=2)
    assert pack.shared == 3 and pack.segments.cached == 2 and pack.segments.shared == 1
    assert pack.input_ids.tolist() == [[3, 4, 5, 6]]
    assert pack.position_ids.tolist() == [[2, 3, 3, 4]]
    assert pack.last_index.tolist() == [1, 3]
    mask = pack.attention_mask[0, 0].int().tolist()  # rows: the computed tokens; columns: every token
    assert mask == [[1, 1, 1, 0, 0, 0],   # the rest of the prefix: the cached head, then causal
                    [1, 1, 1, 1, 0, 0],   # first prompt's own token
                    [1, 1, 1, 0, 1, 0],   # second prompt: the prefix and itself, never the first
                    [1, 1, 1, 0, 1, 1]]
    assert pack.segments.heads() == [2, 3, 3]


def test_a_lone_prompt_after_its_cached_head() -> None:
    pack = _pack_prompts([[4, 5, 6, 7]], torch.device("cpu"), cached=2)
    assert pack.shared == 2 and pack.segments.shared == 0 and pack.segments.lengths == [2]
    assert pack.input_ids.tolist() == [[6, 7]] and pack.position_ids.tolist() == [[2, 3]]
    assert pack.last_index.tolist() == [1]
    assert pack.attention_mask[0, 0].int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_a_cached_head_longer_than_the_shared_one_is_refused() -> None:
    with pytest.raises(ValueError):
        _pack_prompts([[1, 2, 3, 4], [1, 2, 5]], torch.device("cpu"), cached=3)
    with pytest.raises(ValueError):
        _pack_prompts([[1, 2, 3]], torch.device("cpu"), cached=3)  # a lone prompt computes its last token

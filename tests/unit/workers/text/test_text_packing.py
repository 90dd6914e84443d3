"""Packed prefill layout: common prefix once, block causal mask, per-prompt positions."""

from __future__ import annotations

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

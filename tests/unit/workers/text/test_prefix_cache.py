"""PrefixCache: whole blocks of a head, chained digests, salts, LRU eviction, the hit counters."""

from __future__ import annotations

import pytest
import torch

from workers.text.prefix_cache import PrefixCache

LAYERS, HEADS, DIM = 3, 2, 4


def kv_for(tokens: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, keys and values whose every column encodes its token and position (so a wrong
    block, or a block from another head, shows)."""
    cols = torch.tensor([[t * 1000.0 + i for i, t in enumerate(tokens)]]).T  # [n, 1]
    out = []
    for layer in range(LAYERS):
        k = (cols + layer).expand(len(tokens), DIM)[None].expand(HEADS, -1, -1).clone()
        out.append((k, -k))
    return out


def expected(tokens: list[int], n: int) -> torch.Tensor:
    return torch.stack([torch.stack((k[:, :n], v[:, :n])) for k, v in kv_for(tokens)])


def test_a_head_comes_back_in_whole_blocks_up_to_the_limit() -> None:
    cache, tokens = PrefixCache(64, block=4), list(range(1, 12))  # 11 tokens: 2 whole blocks
    assert cache.insert("t", tokens, kv_for(tokens)) == 2
    n, kv = cache.match("t", tokens + [99], limit=11)
    assert n == 8 and torch.equal(kv, expected(tokens, 8))
    assert kv.shape == (LAYERS, 2, HEADS, 8, DIM)
    assert cache.match("t", tokens, limit=7)[0] == 4  # the limit leaves the rest to compute
    assert cache.match("t", tokens, limit=3) == (0, None)


def test_a_block_is_found_only_after_the_same_tokens() -> None:
    cache = PrefixCache(64, block=4)
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    cache.insert("t", a, kv_for(a))
    b = [0, 2, 3, 4, 5, 6, 7, 8, 9]  # second block's tokens equal, first differs
    assert cache.match("t", b, limit=8) == (0, None)
    c = [1, 2, 3, 4, 5, 6, 7, 0, 9]  # first block equal, second differs
    n, kv = cache.match("t", c, limit=8)
    assert n == 4 and torch.equal(kv, expected(a, 4))


def test_heads_are_shared_only_within_a_salt() -> None:
    cache, tokens = PrefixCache(64, block=4), list(range(10))
    cache.insert("tenant-a", tokens, kv_for(tokens))
    assert cache.match("tenant-b", tokens, limit=9) == (0, None)
    assert cache.match("tenant-a", tokens, limit=9)[0] == 8


def test_least_recently_used_blocks_go_first_and_a_used_head_stays() -> None:
    cache = PrefixCache(16, block=4)  # four blocks
    a, b = [1] * 8, [2] * 8
    cache.insert("t", a, kv_for(a))
    cache.insert("t", b, kv_for(b))
    assert len(cache) == 4
    assert cache.match("t", a, limit=8)[0] == 8  # a is now the most recently used
    c = [3] * 8
    cache.insert("t", c, kv_for(c))
    assert len(cache) == 4
    assert cache.match("t", b, limit=8) == (0, None)  # b was evicted, a and c kept
    assert cache.match("t", a, limit=8)[0] == 8 and cache.match("t", c, limit=8)[0] == 8


def test_known_blocks_are_not_copied_again_and_stored_blocks_are_copies() -> None:
    cache, tokens = PrefixCache(64, block=4), list(range(8))
    kv = kv_for(tokens)
    assert cache.insert("t", tokens, kv) == 2
    assert cache.insert("t", tokens + list(range(50, 54)), kv_for(tokens + list(range(50, 54)))) == 1
    kv[0][0].zero_()  # the prefill's tensors are reused: the cache must not alias them
    assert torch.equal(cache.match("t", tokens, limit=8)[1], expected(tokens, 8))


def test_off_when_smaller_than_a_block_and_bad_sizes_refused() -> None:
    cache, tokens = PrefixCache(3, block=4), list(range(8))
    assert not cache.enabled
    assert cache.insert("t", tokens, kv_for(tokens)) == 0 and cache.match("t", tokens, 8) == (0, None)
    with pytest.raises(ValueError):
        PrefixCache(-1)
    with pytest.raises(ValueError):
        PrefixCache(64, block=0)


def test_counts_queries_and_hits() -> None:
    cache = PrefixCache(64)
    cache.count(40, 32)
    cache.count(10, 0)
    assert (cache.queries, cache.hits) == (50, 32)

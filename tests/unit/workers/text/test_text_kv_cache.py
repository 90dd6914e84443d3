"""BatchKVCache layout: joins, growth and compaction, on tiny tensors."""

from __future__ import annotations

import torch

from workers.text.kv_cache import BatchKVCache


def make_cache(max_rows: int = 8) -> BatchKVCache:
    return BatchKVCache(num_layers=2, kv_heads=1, head_dim=2, max_rows=max_rows, dtype=torch.float32,
                        device=torch.device("cpu"))


def seq_kv(tag: float, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer [heads=1, n, dim=2] keys/values whose entries encode (tag, position, layer)."""
    out = []
    for layer in range(2):
        k = (tag + torch.arange(n, dtype=torch.float32) / 1000 + layer * 100).reshape(1, n, 1).expand(1, n, 2)
        out.append((k.clone(), -k.clone()))
    return out


def window(cache: BatchKVCache, layer: int, row: int, n: int) -> torch.Tensor:
    """The last n columns of a row, as [n] (first dim of head_dim)."""
    return cache.layers[layer].keys[row, 0, cache.end - n : cache.end, 0]


def test_rows_join_right_aligned_and_survive_growth() -> None:
    cache = make_cache()
    cache.add_row(seq_kv(1.0, 3))
    cache.add_row(seq_kv(2.0, 150))  # longer than the window and the buffer: regrows, copies row 0
    cache.add_row(seq_kv(3.0, 5))
    for _ in range(5):  # more rows than the initial 4 forces a row regrow too
        cache.add_row(seq_kv(4.0, 2))
    assert cache.rows == 8 and cache.width == 150
    for layer in range(2):
        assert torch.equal(window(cache, layer, 0, 3), seq_kv(1.0, 3)[layer][0][0, :, 0])
        assert torch.equal(window(cache, layer, 1, 150), seq_kv(2.0, 150)[layer][0][0, :, 0])
        assert torch.equal(window(cache, layer, 2, 5), seq_kv(3.0, 5)[layer][0][0, :, 0])
        assert torch.isfinite(cache.layers[layer].keys).all()


def test_update_writes_one_column_and_returns_the_window() -> None:
    cache = make_cache()
    cache.add_row(seq_kv(1.0, 3))
    cache.add_row(seq_kv(2.0, 4))
    new = torch.full((2, 1, 1, 2), 9.0)
    keys, values = cache.layers[0].update(new, -new)
    assert keys.shape == (2, 1, 5, 2)
    assert torch.equal(keys[:, 0, -1, 0], torch.tensor([9.0, 9.0]))
    assert torch.equal(keys[0, 0, 1:4, 0], seq_kv(1.0, 3)[0][0][0, :, 0])
    cache.advance(1)
    assert cache.width == 5


def test_keep_rows_compacts_and_shrinks_the_window() -> None:
    cache = make_cache()
    cache.add_row(seq_kv(1.0, 40))
    cache.add_row(seq_kv(2.0, 3))
    cache.add_row(seq_kv(3.0, 6))
    cache.keep_rows([2, 1], width=6)
    assert cache.rows == 2 and cache.width == 6
    assert torch.equal(window(cache, 1, 0, 6), seq_kv(3.0, 6)[1][0][0, :, 0])
    assert torch.equal(window(cache, 1, 1, 3), seq_kv(2.0, 3)[1][0][0, :, 0])
    cache.keep_rows([], width=0)
    assert cache.rows == 0 and cache.width == 0


def decode_until_past_edge(cache: BatchKVCache, rows: int) -> int:
    """Write columns until the buffer's right edge has been passed; returns the steps taken."""
    steps = cache.cols_cap - cache.end + 5
    for i in range(steps):
        cache.reserve(rows, cache.width)
        for layer in cache.layers:
            layer.update(torch.full((rows, 1, 1, 2), float(i)), torch.zeros(rows, 1, 1, 2))
        cache.advance(1)
    return steps


def test_full_window_regrows_when_decoding_past_the_edge() -> None:
    cache = make_cache()
    cache.add_row(seq_kv(1.0, 10))
    cap = cache.cols_cap
    steps = decode_until_past_edge(cache, 1)
    assert cache.cols_cap > cap and cache.width == 10 + steps
    assert torch.equal(cache.layers[0].keys[0, 0, cache.start : cache.start + 10, 0], seq_kv(1.0, 10)[0][0][0, :, 0])
    assert cache.layers[0].keys[0, 0, cache.end - 1, 0].item() == steps - 1


def test_narrow_window_moves_left_in_place_at_the_edge() -> None:
    cache = make_cache()
    cache.add_row(seq_kv(1.0, 150))
    cache.add_row(seq_kv(2.0, 3))
    cache.keep_rows([1], width=3)  # the long row leaves: the window is 3 columns at the right
    cap, keys = cache.cols_cap, cache.layers[1].keys
    steps = decode_until_past_edge(cache, 1)
    assert cache.cols_cap == cap and cache.layers[1].keys is keys  # moved, not reallocated
    assert cache.width == 3 + steps
    assert torch.equal(cache.layers[1].keys[0, 0, cache.start : cache.start + 3, 0], seq_kv(2.0, 3)[1][0][0, :, 0])
    written = cache.layers[1].keys[0, 0, cache.start + 3 : cache.end, 0]
    assert torch.equal(written, torch.arange(steps, dtype=torch.float32))

"""A batched, left-padded KV cache that sequences join and leave between decode steps.

Layout, per layer: preallocated ``keys``/``values`` of shape ``[rows_cap, kv_heads, cols_cap,
head_dim]``. Row ``r`` belongs to one running sequence. All rows share a write column ``end``:
a decode step writes every row's new key/value at ``end`` and attends over columns
``[start, end]``. A sequence with ``n`` cached tokens owns the last ``n`` columns of the window;
columns to the left of them are padding, masked out by the engine (``attention_mask``).

- join: a prefilled sequence's keys/values are copied right-aligned into a free row; the window
  widens to the left if the new sequence is longer than the window.
- leave: surviving rows are compacted to the top and ``start`` moves right to the longest
  survivor (a pointer move, no copy).
- growth: when a row or column is missing, buffers are reallocated (doubling) and the window is
  copied once.

Buffers are zero-initialised: padding columns are masked, but their values still enter the
attention kernel and must be finite.

The class implements the ``transformers`` ``Cache`` interface that decoder layers call
(``update(key, value, layer_idx)``) and returns views, so a step writes one column per layer and
copies nothing else.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

#: Extra columns allocated beyond the current need when the buffers grow (then doubling).
_MIN_COL_HEADROOM = 64


class _BatchLayer(CacheLayerMixin):
    """One decoder layer's slice of a :class:`BatchKVCache`."""

    is_sliding = False

    def __init__(self, owner: BatchKVCache) -> None:
        super().__init__()
        self._owner = owner
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor) -> None:  # buffers come from the owner
        return None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, cache_kwargs: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        o = self._owner
        rows, width = key_states.shape[0], key_states.shape[-2]
        self.keys[:rows, :, o.end : o.end + width] = key_states
        self.values[:rows, :, o.end : o.end + width] = value_states
        return self.keys[:rows, :, o.start : o.end + width], self.values[:rows, :, o.start : o.end + width]

    def get_mask_sizes(self, cache_position: torch.Tensor) -> tuple[int, int]:
        return self._owner.width + cache_position.shape[0], 0

    def get_seq_length(self) -> int:
        return self._owner.width

    def get_max_cache_shape(self) -> int:
        return -1


class BatchKVCache(Cache):
    """Keys and values of the running batch; see the module docstring for the layout."""

    def __init__(
        self, *, num_layers: int, kv_heads: int, head_dim: int, max_rows: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        super().__init__(layers=[])
        self.layers = [_BatchLayer(self) for _ in range(num_layers)]
        self._shape = (kv_heads, head_dim)
        self._max_rows = max_rows
        self._dtype, self._device = dtype, device
        self.rows = 0
        self.start = 0
        self.end = 0
        self._alloc(rows_cap=min(4, max_rows), cols_cap=_MIN_COL_HEADROOM)

    @property
    def width(self) -> int:
        """Columns in the window: the longest cached sequence."""
        return self.end - self.start

    def _alloc(self, rows_cap: int, cols_cap: int) -> None:
        heads, dim = self._shape
        for layer in self.layers:
            layer.keys = torch.zeros(rows_cap, heads, cols_cap, dim, dtype=self._dtype, device=self._device)
            layer.values = torch.zeros_like(layer.keys)
        self.rows_cap, self.cols_cap = rows_cap, cols_cap

    def reserve(self, rows: int, width: int) -> None:
        """Make room for ``rows`` rows, a window of ``width`` columns ending at ``end``, and one
        more column to decode into. Moves the window (or reallocates) only when it must."""
        if rows <= self.rows_cap and width <= self.end and self.end + 1 <= self.cols_cap:
            return
        if rows > self._max_rows:
            raise ValueError(f"batch cache holds at most {self._max_rows} rows, asked for {rows}")
        old_k = [layer.keys for layer in self.layers]
        old_v = [layer.values for layer in self.layers]
        # Moving in place is fine while it leaves enough free columns to amortise the copy;
        # otherwise grow (doubling).
        min_free = max(_MIN_COL_HEADROOM, width // 2)
        if rows > self.rows_cap or width + min_free > self.cols_cap:
            rows_cap = self.rows_cap
            while rows_cap < rows:
                rows_cap = min(rows_cap * 2, self._max_rows)
            self._alloc(rows_cap, max(self.cols_cap, 2 * width, width + _MIN_COL_HEADROOM))
        # Right-align the window at column `width`: `width` columns fit to its left, and at
        # least as many to its right before the next move.
        old_start, old_end = self.start, self.end
        self.end, self.start = width, width - (old_end - old_start)
        if self.rows:
            for layer, k, v in zip(self.layers, old_k, old_v, strict=True):
                if k is layer.keys:  # moving inside the same buffer: copy out first (ranges overlap)
                    k, v = k[: self.rows, :, old_start:old_end].clone(), v[: self.rows, :, old_start:old_end].clone()
                else:
                    k, v = k[: self.rows, :, old_start:old_end], v[: self.rows, :, old_start:old_end]
                layer.keys[: self.rows, :, self.start : self.end] = k
                layer.values[: self.rows, :, self.start : self.end] = v

    def add_row(self, layer_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Append a sequence whose per-layer keys/values are ``[kv_heads, n, head_dim]``; returns its row."""
        n = layer_kv[0][0].shape[-2]
        self.reserve(self.rows + 1, max(self.width, n))
        row = self.rows
        for layer, (k, v) in zip(self.layers, layer_kv, strict=True):
            layer.keys[row, :, self.end - n : self.end] = k
            layer.values[row, :, self.end - n : self.end] = v
        self.rows += 1
        self.start = min(self.start, self.end - n)
        return row

    def advance(self, columns: int = 1) -> None:
        """Commit the columns that the last forward pass wrote at ``end``."""
        self.end += columns

    def keep_rows(self, keep: list[int], width: int) -> None:
        """Keep only rows ``keep`` (in that order, moved to the top) and shrink the window to ``width``."""
        if keep != list(range(len(keep))):
            index = torch.tensor(keep, device=self._device, dtype=torch.long)
            for layer in self.layers:
                layer.keys[: len(keep), :, self.start : self.end] = layer.keys[index, :, self.start : self.end]
                layer.values[: len(keep), :, self.start : self.end] = layer.values[index, :, self.start : self.end]
        self.rows = len(keep)
        if self.rows == 0:
            self.start = self.end = 0
        else:
            self.start = self.end - width

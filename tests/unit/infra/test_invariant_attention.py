"""The invariant attention of a decode step: each row over its own keys, the same bits alone or beside
rows of any length, never reading the padding; a prefill's attention stays float64."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from infra.models.invariant import DecodeRows, invariant_attention

HEADS, KV_HEADS, DIM = 9, 3, 64  # SmolLM2-135M's attention shapes


class _Layer(torch.nn.Module):  # what transformers passes as `module`
    num_key_value_groups = HEADS // KV_HEADS
    is_causal = True


def _window(lengths: list[int], width: int, pad: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of a left-padded batch window: row r's own keys are its last lengths[r] columns."""
    keys = torch.full((len(lengths), KV_HEADS, width, DIM), pad, dtype=torch.bfloat16)
    values = keys.clone()
    for row, n in enumerate(lengths):
        keys[row, :, width - n:] = torch.randn(KV_HEADS, n, DIM).to(torch.bfloat16)
        values[row, :, width - n:] = torch.randn(KV_HEADS, n, DIM).to(torch.bfloat16)
    return keys, values


def _attend(query, keys, values, lengths):
    out, _ = invariant_attention(_Layer(), query, keys, values, None, genloom_rows=DecodeRows(lengths),
                                 scaling=DIM**-0.5)
    return out


def test_a_row_gets_the_same_bits_alone_and_beside_rows_of_any_length() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    lengths = [37, 160, 5, 96]
    keys, values = _window(lengths, width=max(lengths) + 11)
    query = torch.randn(len(lengths), HEADS, 1, DIM).to(torch.bfloat16)
    batched = _attend(query, keys, values, lengths)
    assert batched.shape == (len(lengths), 1, HEADS, DIM) and batched.dtype == torch.bfloat16
    for row, n in enumerate(lengths):
        alone = _attend(query[row : row + 1], keys[row : row + 1, :, -n:].contiguous(),
                        values[row : row + 1, :, -n:].contiguous(), [n])
        assert torch.equal(alone, batched[row : row + 1])
        # and it is attention: float64 SDPA over the same keys agrees to bf16's resolution
        reference = F.scaled_dot_product_attention(
            query[row : row + 1].double(), keys[row : row + 1, :, -n:].double(), values[row : row + 1, :, -n:].double(),
            scale=DIM**-0.5, enable_gqa=True).transpose(1, 2)
        assert torch.allclose(alone.double(), reference, atol=2e-2, rtol=2e-2)


def test_the_padding_is_never_read() -> None:
    torch.manual_seed(1)
    lengths = [3, 20]
    clean, values = _window(lengths, width=24)
    dirty, dirty_values = _window(lengths, width=24, pad=float("nan"))
    dirty[:, :, -3:], dirty_values[:, :, -3:] = clean[:, :, -3:], values[:, :, -3:]
    dirty[1], dirty_values[1] = clean[1], values[1]
    query = torch.randn(2, HEADS, 1, DIM).to(torch.bfloat16)
    out = _attend(query, dirty, dirty_values, lengths)
    assert not out.isnan().any()
    assert torch.equal(out, _attend(query, clean, values, lengths))


@pytest.mark.parametrize("rows", [None, DecodeRows([4, 4])])
def test_without_rows_or_for_more_than_one_query_it_is_float64_sdpa(rows) -> None:
    """A prefill (several queries per row) or a call that does not say whose keys are whose: float64
    attention under the mask, as before."""
    torch.manual_seed(2)
    query = torch.randn(2, HEADS, 4, DIM).to(torch.bfloat16)
    keys, values = _window([4, 4], width=4)
    out, _ = invariant_attention(_Layer(), query, keys, values, None, genloom_rows=rows, scaling=DIM**-0.5)
    reference = F.scaled_dot_product_attention(query.double(), keys.double(), values.double(), is_causal=True,
                                               scale=DIM**-0.5, enable_gqa=True).transpose(1, 2).to(torch.bfloat16)
    assert torch.equal(out, reference)


def test_a_float32_model_attends_in_float32_with_the_same_layout() -> None:
    """layout_attention (float32 models on CPU): a decode step row by row over each row's own keys,
    the same bits alone or batched and agreeing with SDPA over the padded window under its mask; a
    packed prefill per prompt, agreeing with SDPA over the pack under the block mask; no float64."""
    from infra.models.invariant import Segments, layout_attention

    torch.manual_seed(3)
    lengths = [7, 40, 19]
    width = max(lengths)
    keys = torch.randn(len(lengths), KV_HEADS, width, DIM)
    values = torch.randn(len(lengths), KV_HEADS, width, DIM)
    query = torch.randn(len(lengths), HEADS, 1, DIM)
    out, _ = layout_attention(_Layer(), query, keys, values, None, genloom_rows=DecodeRows(lengths), scaling=DIM**-0.5)
    assert out.dtype == torch.float32
    mask = torch.arange(width)[None, :] >= (width - torch.tensor(lengths))[:, None]
    padded = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask[:, None, None, :], scale=DIM**-0.5,
                                            enable_gqa=True).transpose(1, 2)
    assert torch.allclose(out, padded, atol=1e-5, rtol=1e-5)
    for row, n in enumerate(lengths):
        alone, _ = layout_attention(_Layer(), query[row:row + 1], keys[row:row + 1, :, -n:], values[row:row + 1, :, -n:],
                                    None, genloom_rows=DecodeRows([n]), scaling=DIM**-0.5)
        assert torch.equal(alone, out[row:row + 1])

    segments = Segments(shared=5, lengths=[4, 9])  # a prefix, then two prompts
    total = 5 + 4 + 9
    q, k, v = (torch.randn(1, h, total, DIM) for h in (HEADS, KV_HEADS, KV_HEADS))
    owner = torch.tensor([-1] * 5 + [0] * 4 + [1] * 9)
    index = torch.arange(total)
    block = ((owner[:, None] == owner[None, :]) | (owner[None, :] == -1)) & (index[None, :] <= index[:, None])
    split, _ = layout_attention(_Layer(), q, k, v, block[None, None], genloom_segments=segments, scaling=DIM**-0.5)
    whole = F.scaled_dot_product_attention(q, k, v, attn_mask=block[None, None], scale=DIM**-0.5,
                                           enable_gqa=True).transpose(1, 2)
    assert split.dtype == torch.float32 and torch.allclose(split, whole, atol=1e-5, rtol=1e-5)

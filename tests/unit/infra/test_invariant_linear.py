"""GemmLinear: every row's bits are those of a two-row product, however many rows the product has
(alone, a decode batch, a prefill of any length) and wherever the row sits in it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from infra.models.invariant import MAX_ROWS, GemmLinear


@pytest.fixture
def layer() -> GemmLinear:
    torch.manual_seed(0)
    linear = torch.nn.Linear(576, 1536, bias=True).to(torch.bfloat16)  # an MLP's up projection
    linear.__class__ = GemmLinear
    return linear


def pairwise(layer: GemmLinear, x: torch.Tensor) -> torch.Tensor:
    """Each row as the second of a two-row product (the reference every product size must match)."""
    return torch.cat([F.linear(torch.cat((row, row))[None].reshape(2, -1), layer.weight, layer.bias)[1:]
                      for row in x])


@pytest.mark.parametrize("rows", [1, 2, 7, MAX_ROWS, MAX_ROWS + 1, 47, 2 * MAX_ROWS + 1, 130])
def test_rows_are_bit_identical_whatever_the_product_size(layer, rows):
    torch.set_num_threads(1)
    x = (torch.randn(rows, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        got = layer(x)
        assert got.shape == (rows, 1536)
        assert torch.equal(got, pairwise(layer, x))
        # batched (a leading dimension) the same as flat
        assert torch.equal(layer(x[None])[0], got)


def test_a_prefix_prefilled_alone_and_packed_gets_the_same_bits(layer):
    """The failure this guards against: a short prompt alone (20 rows) against the same rows first in a
    pack of 47 (on AMX CPUs a single product of more than 32 rows orders its sums by its size)."""
    torch.set_num_threads(1)
    packed = (torch.randn(47, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(packed[:20]), layer(packed)[:20])
        assert torch.allclose(layer(packed).float(), F.linear(packed, layer.weight, layer.bias).float(), atol=0.05)

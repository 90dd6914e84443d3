"""GemmLinear: every row's bits are those of a two-row product, however many rows the product has
(alone, a decode batch, a prefill of any length) and wherever the row sits in it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from infra.models import invariant
from infra.models.invariant import (
    MAX_ROWS,
    MIN_ROWS,
    PAD_BELOW,
    TILE_ROWS,
    WIDE_ROWS,
    GemmLinear,
    mark_prefills,
    pack_weights,
)

PACKS = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def up_projection() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(576, 1536, bias=True).to(torch.bfloat16)  # an MLP's up projection


@pytest.fixture(params=["plain", "packed"])
def layer(request) -> GemmLinear:
    linear = up_projection()
    linear.reference = (linear.weight.detach().clone(), linear.bias.detach().clone())
    linear.__class__ = GemmLinear
    if request.param == "packed":
        if not PACKS:  # nothing to pack for: the layer stays plain, and the rows must still hold
            assert pack_weights(linear) == 0 and linear.packed is None
            return linear
        assert pack_weights(linear) == 1
        assert linear.weight.numel() == 0  # released: the packed copy is the only one
    return linear


def pairwise(layer: GemmLinear, x: torch.Tensor) -> torch.Tensor:
    """Each row as the second of a two-row plain ``F.linear`` product (the reference every product size,
    packed or not, must match)."""
    weight, bias = layer.reference
    return torch.cat([F.linear(torch.cat((row, row))[None].reshape(2, -1), weight, bias)[1:] for row in x])


@pytest.mark.parametrize("rows", [1, 2, 3, MIN_ROWS, 7, MAX_ROWS, MAX_ROWS + 1, 47, 2 * MAX_ROWS + 1, 130, WIDE_ROWS + 1, 2 * WIDE_ROWS + 45])
def test_rows_are_bit_identical_whatever_the_product_size(layer, rows):
    torch.set_num_threads(1)
    x = (torch.randn(rows, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        got = layer(x)
        assert got.shape == (rows, 1536)
        assert torch.equal(got, pairwise(layer, x))
        # batched (a leading dimension) the same as flat
        assert torch.equal(layer(x[None])[0], got)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_a_decode_step_of_one_or_two_rows_multiplies_min_rows(layer, rows):
    """One or two streams decode as one product of MIN_ROWS rows, which oneDNN runs faster than two;
    three as they are."""
    sizes = []
    product = layer._product
    layer._product = lambda x: sizes.append(x.shape[0]) or product(x)
    x = (torch.randn(rows, 1, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        got = layer(x)
    assert sizes == [MIN_ROWS if rows < PAD_BELOW else rows] and got.shape == (rows, 1, 1536)
    assert torch.equal(got[:, 0], pairwise(layer, x[:, 0]))


def test_a_prefix_prefilled_alone_and_packed_gets_the_same_bits(layer):
    """The failure this guards against: a short prompt alone (20 rows) against the same rows first in a
    pack of 47 (on AMX CPUs a single product of more than 32 rows orders its sums by its size)."""
    torch.set_num_threads(1)
    packed = (torch.randn(47, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(packed[:20]), layer(packed)[:20])
        assert torch.allclose(layer(packed).float(), F.linear(packed, *layer.reference).float(), atol=0.05)


@pytest.mark.skipif(not PACKS, reason="needs oneDNN's bf16 product (AVX512-BF16 or AMX); the plain path is tested above")
def test_packing_keeps_a_shared_weight_and_refuses_where_the_bits_would_differ(monkeypatch):
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(64, 576).to(torch.bfloat16)
    head = torch.nn.Linear(576, 64, bias=False).to(torch.bfloat16)
    head.weight = embedding.weight  # a tied output head: the embedding still reads the plain weight
    model = torch.nn.ModuleList([embedding, head, up_projection()])
    for module in model[1:]:
        module.__class__ = GemmLinear
    with monkeypatch.context() as patch:  # a CPU whose packed product would differ: nothing is packed
        patch.setattr(invariant, "_packed_rows", lambda *_: 0)
        assert pack_weights(model) == 0
        assert model[1].packed is None and model[2].weight.shape == (1536, 576)
    assert pack_weights(model) == 2
    assert model[1].weight is embedding.weight and embedding.weight.shape == (64, 576)
    assert model[2].weight.numel() == 0
    assert pack_weights(model) == 0  # packed once
    x = (torch.randn(5, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(model[1](x), F.linear(x, embedding.weight))


@pytest.mark.skipif(not PACKS, reason="needs oneDNN's bf16 product (AVX512-BF16 or AMX); the plain path is tested above")
def test_a_packed_layer_takes_wide_products_only_where_they_are_exact(monkeypatch):
    """Where products of more than 32 rows order their sums by their size (AMX tile kernels), the load-time
    check keeps 32-row pieces; where they do not, a prefill runs in pieces of up to WIDE_ROWS."""
    real = torch.ops.mkldnn._linear_pointwise

    def size_ordered(x, *args):  # stands in for a tile kernel: a product of more than 32 rows sums differently
        out = real(x, *args)
        return out + out.abs() * 2.0**-7 if x.shape[0] > MAX_ROWS else out

    def one_row_off(x, *args):  # as measured on an Intel Xeon with AMX: only some rows of a wide product differ
        if x.shape[0] <= MAX_ROWS:
            return real(x, *args)
        out = torch.cat([real(row[None].expand(2, -1), *args)[1:] for row in x])  # each row exact, by construction
        out[5] += out[5].abs() * 2.0**-7  # but one, which a check of every 11th row never looks at
        return out

    # a tile kernel whose rows keep their bits at one size takes a prefill in tiles of that size; one whose
    # rows depend on where they sit does not
    for kernel, tiles in ((size_ordered, TILE_ROWS), (one_row_off, 0)):
        layer = up_projection()
        layer.__class__ = GemmLinear
        with monkeypatch.context() as patch:
            patch.setattr(invariant.torch.ops.mkldnn, "_linear_pointwise", kernel)
            assert pack_weights(layer) == 1
        assert layer.max_rows == MAX_ROWS, kernel.__name__
        assert layer.tile_rows == tiles, kernel.__name__
    wide = up_projection()
    wide.__class__ = GemmLinear
    assert pack_weights(wide) == 1
    # what this CPU does: the check decides, and the layer is exact at whatever it decided (tested above)
    assert wide.max_rows in (MAX_ROWS, WIDE_ROWS)
    assert wide.tile_rows == 0 if wide.max_rows == WIDE_ROWS else wide.tile_rows in (0, TILE_ROWS)
    unpacked = up_projection()
    unpacked.__class__ = GemmLinear
    assert unpacked.max_rows == MAX_ROWS  # F.linear is never trusted beyond 32 rows


class Prompted(torch.nn.Module):
    """A stand-in causal LM: called as the engine calls the model, it applies one layer to its input."""

    def __init__(self, layer: GemmLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inputs_embeds: torch.Tensor, genloom_segments=None, genloom_rows=None) -> torch.Tensor:
        if genloom_segments == "fail":
            raise RuntimeError("a failed pass")
        return self.layer(inputs_embeds)


def tiled(layer: GemmLinear) -> tuple[Prompted, list[int]]:
    """``layer`` with a prefill's products in tiles of TILE_ROWS, in a model that marks its prefills, and
    the sizes of the products it multiplies."""
    layer.tile_rows = TILE_ROWS
    sizes: list[int] = []
    product = layer._product
    layer._product = lambda x: sizes.append(x.shape[0]) or product(x)
    model = Prompted(layer)
    mark_prefills(model)
    mark_prefills(model)  # once per model, however often asked
    return model, sizes


@pytest.mark.parametrize("rows", [1, 20, TILE_ROWS, TILE_ROWS + 1, 130])
def test_a_prefill_multiplies_in_tiles_and_a_decode_step_as_before(rows):
    """In a prefill (more than one token per row, or the engine's segments) every product of a tiled layer
    has TILE_ROWS rows, the last padded and the padding dropped; a decode step (one token per row, or the
    engine's rows) and a call outside a model multiply as before; a pass that fails clears the mark."""
    torch.manual_seed(rows)
    linear = up_projection()
    linear.__class__ = GemmLinear
    model, sizes = tiled(linear)
    x = (torch.randn(1, rows, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        got = model(inputs_embeds=x) if rows > 1 else model(inputs_embeds=x, genloom_segments=object())
        assert got.shape == (1, rows, 1536)
        assert sizes == [TILE_ROWS] * -(-rows // TILE_ROWS)
        sizes.clear()
        assert torch.allclose(got[0].float(), F.linear(x[0], linear.weight, linear.bias).float(), atol=0.05)
        step = (torch.randn(3, 1, 576) * 0.5).to(torch.bfloat16)
        decoded = model(inputs_embeds=step)  # three rows of one token: a decode step
        assert sizes == [3] and torch.equal(decoded[:, 0], linear(step[:, 0]))
        sizes.clear()
        model(inputs_embeds=step[:2], genloom_rows=object())  # the engine's decode rows: padded to MIN_ROWS
        assert sizes[0] == MIN_ROWS
        with pytest.raises(RuntimeError):
            model(inputs_embeds=x, genloom_segments="fail")
        sizes.clear()
        linear(x[0, :2])  # outside a model's pass: not a prefill
        assert sizes == [MIN_ROWS]


@pytest.mark.skipif(not PACKS, reason="needs oneDNN's bf16 product (AVX512-BF16 or AMX); the tiles' mechanism is tested above")
def test_a_tiled_prefill_gives_a_prompt_the_same_bits_alone_packed_and_shifted():
    """The load-time check's tiles, on this CPU's kernel: a prompt's 20 rows prefilled alone, first in a
    pack of 47 and after 29 other rows get the same bits (on AMX CPUs a wider product orders its sums by
    its size, which tiles of one size avoid)."""
    torch.set_num_threads(1)
    linear = up_projection()
    linear.__class__ = GemmLinear
    assert pack_weights(linear) == 1
    shape = torch.empty(1536, 576, dtype=torch.bfloat16)  # the check reads only the weight's shape and dtype
    if invariant._tile_rows(shape, linear.bias, linear.packed) == 0:  # no CPU seen so far; say so if one does
        pytest.fail("products of exactly TILE_ROWS rows depend on where a row sits on this CPU")
    model, sizes = tiled(linear)
    rows = (torch.randn(49, 576) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        alone = model(inputs_embeds=rows[None, :20])[0]
        assert torch.equal(model(inputs_embeds=rows[None, :47])[0, :20], alone)
        assert torch.equal(model(inputs_embeds=rows[None, 29:49])[0], model(inputs_embeds=rows[None])[0, 29:])
    assert set(sizes) == {TILE_ROWS}


def test_a_float32_output_head_is_packed_once_and_multiplies_as_before() -> None:
    """pack_float32: the output head on oneDNN's packed weight, its products equal to F.linear's to
    float32's rounding at 1 to 300 rows; a head tied to the input embedding keeps the shared weight, an
    untied one's plain copy is released. With linears=False nothing else is packed."""
    from infra.models.invariant import PackedLinear, pack_float32

    class Tiny(torch.nn.Module):
        def __init__(self, tied: bool) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(300, 64)
            self.proj = torch.nn.Linear(64, 64)
            self.head = torch.nn.Linear(64, 300, bias=False)
            if tied:
                self.head.weight = self.embed.weight

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    torch.manual_seed(5)
    if not torch.backends.mkldnn.is_available():
        assert pack_float32(Tiny(False)) == 0
        return
    for tied in (True, False):
        model = Tiny(tied)
        weight = model.head.weight.detach().clone()
        assert pack_float32(model, linears=False) == 1
        assert type(model.head) is PackedLinear and model.head.packed is not None
        assert type(model.proj) is torch.nn.Linear  # only the head
        assert (model.head.weight is model.embed.weight) if tied else model.head.weight.numel() == 0
        for rows in (1, 16, 300):
            x = torch.randn(rows, 64)
            assert torch.allclose(model.head(x), F.linear(x, weight), rtol=1e-4, atol=1e-4)
        assert pack_float32(model, linears=False) == 0  # packed once


def test_float32_linears_multiply_2_to_32_rows_packed_and_keep_their_plain_weight_for_the_rest() -> None:
    """pack_float32 (linears=True, the default): every other float32 Linear becomes a Float32Linear
    that keeps its plain weight (one row, prefills) beside a packed copy (2 to FLOAT32_PACKED_ROWS rows),
    both giving F.linear's products to float32's rounding."""
    from infra.models.invariant import FLOAT32_PACKED_ROWS, Float32Linear, pack_float32

    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Linear(96, 64, bias=False))
    torch.manual_seed(6)
    if not torch.backends.mkldnn.is_available():
        assert pack_float32(model) == 0
        return
    weights = [m.weight.detach().clone() for m in model]
    assert pack_float32(model) == 2
    assert all(type(m) is Float32Linear and m.packed is not None for m in model)
    assert all(torch.equal(m.weight, w) for m, w in zip(model, weights))  # the plain weight stays
    for rows in (1, 2, 7, FLOAT32_PACKED_ROWS, FLOAT32_PACKED_ROWS + 1, 300):
        x = torch.randn(rows, 64)
        want = F.linear(F.linear(x, weights[0], model[0].bias), weights[1])
        assert torch.allclose(model(x), want, rtol=1e-4, atol=1e-4), rows
    # which copy multiplies: with the plain weight zeroed, only the packed rows keep their product
    with torch.no_grad():
        model[1].weight.zero_()
    for rows, packed in ((1, False), (2, True), (FLOAT32_PACKED_ROWS, True), (FLOAT32_PACKED_ROWS + 1, False)):
        x = torch.randn(1, rows, 96)  # the leading dimensions count as rows too
        assert bool(model[1](x).abs().sum() > 0) is packed, rows
    assert pack_float32(model) == 0  # packed once

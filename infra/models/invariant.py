"""Reduced-precision text models on CPU that still decode batch-invariantly.

bfloat16 weights halve the bytes a decode step reads and, on CPUs with native bf16 dot products
(AVX512-BF16, AMX), run the Linear layers about twice as fast as float32 at 4 to 16 rows
(`bench/text_dtype.py`). But a greedy stream must pick the same tokens alone and batched, and in
bf16 every tiny difference in summation order that float32 would absorb can flip a rounding and,
a few tokens later, a token. Measured on this CPU (torch 2.13, oneDNN 3.12) two places differ:

- **One-row matrix products.** A Linear applied to a single row takes a matrix-vector path whose
  sums are ordered differently from the matrix-matrix path every larger batch takes.
  :class:`GemmLinear` never multiplies fewer than three rows: one or two are padded to four with copies
  of the first, the copies dropped, so one stream decodes exactly as it would in a batch. Four, not two:
  every row of a product of 2 to 32 rows has the same bits, and oneDNN streams the weights faster for
  four rows than for two (a decode step of one stream 34 ms instead of 39, of two 35 instead of 38, AMD
  EPYC with AVX512-BF16, `bench/decode_rows.py`).
- **Large matrix products on AMX CPUs.** Up to 32 rows, the bf16 kernel gives every row the same bits
  as a two-row product, from any position. Beyond that, a CPU with AMX tiles (Sapphire Rapids and
  later) takes tile kernels whose sums are ordered by the product's size: a prompt prefilled alone
  (34 rows) and packed with another (47 rows) got different MLP outputs, and one of two test streams
  diverged within 5 tokens. CPUs without AMX gave identical rows from 2 to 200 (an AMD EPYC with
  AVX512-BF16: 2 to 300, packed). :class:`GemmLinear` multiplies at most 32 rows at once (a prefill in
  pieces; the last piece never a single row), which makes every row's bits independent of the
  product's size on both; a 288-row product of this model's shapes took about 2.3x as long in 32-row
  pieces on an AMX CPU, and only prefills are that large. A packed layer takes up to 256 rows at once
  where a check at load finds products of 33 to 256 rows exact, every row of them (that EPYC): an
  88-token prompt's Linear layers took 0.81x the time of 32-row pieces there. The differences can be
  sparse: on another AMX CPU (an Intel Xeon whose oneDNN 3.12 runs ``brg_matmul:avx10_1_512_amx``),
  products of more than 32 rows gave only some rows other bits (5 of 33 rows, 23 of 256 of an MLP
  projection, at inputs of scale 2), so a check of every 11th row let four of the five weight shapes
  take 256 rows, a prompt's head cached from a prefill of 31 tokens differed from the same head
  prefilled in a 37-token prompt, and a greedy stream served from the prefix cache diverged. The
  check now compares every row.

  On that Xeon the rows of a product of one fixed size above 32 keep their bits wherever they sit and
  whatever rows come with them (every weight shape of this model, 33 to 128 rows, at three input scales);
  only products of different sizes differ. So a prefill there multiplies in tiles: every product of a
  prefill exactly :data:`TILE_ROWS` (48) rows, the last padded, where the load-time check finds products
  of that size exact from any position while wider ones are not. A prompt's rows then meet the tile
  kernel at one size whether prefilled alone, packed, in pieces or after a cached head; decode steps keep
  products of up to 32 rows (a decode row is never a prompt row, so the two need not agree). The model's
  forward call says which it is (:func:`mark_prefills`). Measured there (``bench/prefill_tiles.py``, the
  engine alone, one thread): a chat prompt of the serving benchmark after its cached head (42 rows)
  prefilled in 0.83-0.86x the time of 32-row pieces, the whole prompt (90 rows) in 0.83-0.94x, and a
  one-line question after a cached head (9 rows, padded to 48) in 1.18-1.22x. Tiles of 33, 40 or 64 rows
  did worse on the first two.
- **Attention over padded or packed keys.** The batch's cache is left-padded to its widest row and
  a packed prefill attends over every prompt of the pack under a block mask, so the reductions over
  keys are split and ordered differently than for the sequence alone. Float32 attention still
  differs after rounding back to bf16 (13 of 24 streams diverged within 40 tokens). A decode step
  therefore attends row by row over each row's own keys (:class:`DecodeRows`, passed as
  ``genloom_rows``): the same float32 products of the same shapes alone or batched, exact without
  float64 or a mask. A prefill, and any call without ``genloom_rows``, accumulates in float64
  (:func:`invariant_attention`), which makes those differences vanish below bf16's resolution (none
  diverged). Float64 over the padded window cost most of a 16-row decode step once prompts were
  ~100 tokens (its time grew with the window: 164 ms at 95 columns, 284 ms at 160); row by row it
  took 72-80 ms over the same range.

A packed prefill (the engine's several prompts in one forward pass, their common prefix once) may
also say where its prompts lie (:class:`Segments`, passed to the model as ``genloom_segments``):
attention is then computed for the prefix and for each prompt over its own keys only (the prefix
and itself), which is the computation of the prompt alone, instead of over the whole packed length
under a block mask, which spends most of its work on masked-out pairs (n prompts of L tokens: about
n·L² pairs against (n·L)²). Other attention implementations ignore it and use the mask.

Every bf16 Linear's weight is also packed once, at load, into oneDNN's blocked layout
(:func:`pack_weights`). ``F.linear`` hands oneDNN the plain weight on every call, to be laid out for
its kernel each time, which a decode step, reading every weight once, pays in full: packed, a decode
step of the default model took 0.61-0.75x the time at 1 to 16 rows, a prefill 0.91x (AMD EPYC with
AVX512-BF16, `bench/text_dtype.py`). The packed product gives each row the same bits as
``F.linear`` (checked for every weight shape when it is packed; a CPU or build where it does not
keeps ``F.linear``), so the rules above hold unchanged. The plain copy of a packed weight is released
unless another module shares it (the input embedding a tied output head reads).

Applied by :func:`make_batch_invariant`, which the loader calls for a reduced-precision model on CPU.

A float32 model on CPU (the loader's choice on a CPU without native bf16) needs none of this to keep
greedy streams alike: float32 absorbs the differences in summation order. It still gets the same
attention layout in its own dtype (:func:`layout_attention`: a decode step row by row, a packed
prefill per prompt, so nothing is spent on masked-out keys) and its weights packed (:func:`pack_float32`),
by :func:`optimize_float32`: a 16-row decode step of the default model over serving-length prompts took
0.80-0.87x the time with the layout and the output head packed (0.87x from the head alone), a prefill of 16
prompts 0.72-0.81x, a one-row step the same (AMD EPYC with AVX2, no AVX512, one thread; 16 of 16 greedy
streams identical to SDPA's). Every other Linear keeps its plain weight for one row and prefills and
multiplies 2 to :data:`FLOAT32_PACKED_ROWS` rows on a packed copy (:class:`Float32Linear`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: the attention implementation name registered with transformers
ATTENTION = "genloom_invariant_sdpa"
#: the name of the float32 one (the same layout, no float64)
LAYOUT_ATTENTION = "genloom_layout_sdpa"


#: the most rows one product takes: oneDNN's bf16 kernel for up to 32 rows gives every row the same
#: bits as a two-row product, from any position; on AMX CPUs larger products take tile kernels whose
#: sums are ordered by the product's size (see the module docstring)
MAX_ROWS = 32
#: the rows a product of fewer than :data:`PAD_BELOW` rows is padded to: every row of a product of 2 to
#: :data:`MAX_ROWS` rows has a two-row product's bits, so padding changes none, and oneDNN's bf16 kernel
#: streams the weights faster for 4 rows than for 1 or 2 (see the module docstring)
MIN_ROWS = 4
#: products of fewer rows than this are padded: a product of 3 rows runs as it is (padding it to 4 copies
#: more than the kernel saves: a decode step of 3 streams was about 2 ms slower padded, AMD EPYC)
PAD_BELOW = 3
#: the most rows a packed layer's product takes where the load-time check finds that products of up
#: to this many rows give every row a two-row product's bits (CPUs without AMX tiles): a prefill in
#: fewer, larger pieces
WIDE_ROWS = 256
#: the rows of every product of a prefill on a layer whose wider products order their sums by their size
#: (AMX tile kernels) but whose products of exactly this many rows give each row the same bits wherever it
#: sits and whatever its neighbours (checked at load): the last piece is padded to it. A prompt's rows then
#: always meet the tile kernels at one size, alone, packed, in pieces or after a cached head; decode steps
#: keep the products of up to :data:`MAX_ROWS` rows
TILE_ROWS = 48

#: the most rows a float32 :class:`Float32Linear` multiplies on its packed weight: in a scratch measurement of
#: the default model's Linear weights streamed from memory, oneDNN's packed product was faster than the BLAS up
#: to 24 rows, as fast at 32 and slower from 48 (a prefill's products were 1.07-1.16x slower packed in
#: `bench/decode_step.py` before this bound; AMD EPYC with AVX2, one thread)
FLOAT32_PACKED_ROWS = 32

#: whether the model forward running on this thread is a prefill (see :func:`mark_prefills`)
_PHASE = threading.local()


def _packed_product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` times a weight packed into oneDNN's blocked layout (:func:`_pack`), plus ``bias``."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _padded(flat: torch.Tensor, rows: int) -> torch.Tensor:
    """``flat`` padded to ``rows`` rows with copies of its first row (a view when it is a single row)."""
    have = flat.shape[0]
    if have == rows:
        return flat
    return flat.expand(rows, -1) if have == 1 else torch.cat((flat, flat[:1].expand(rows - have, -1)))


class PackedLinear(nn.Linear):
    """nn.Linear whose weight is packed once into oneDNN's blocked layout where that was found to
    give ``F.linear``'s result (:func:`pack_weights`, :func:`pack_float32`)."""

    #: the weight in oneDNN's blocked layout; None multiplies ``weight``
    packed: torch.Tensor | None = None

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return _packed_product(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._product(x)


class Float32Linear(PackedLinear):
    """A float32 nn.Linear that multiplies 2 to :data:`FLOAT32_PACKED_ROWS` rows (the decode steps of
    several streams) on a copy of its weight packed into oneDNN's layout, which streams the weight faster
    there than the BLAS's matrix-matrix path, and a single row (one stream's decode step: the BLAS's
    matrix-vector path streams it fastest) or more rows (prefills, where the BLAS is faster) on its plain
    weight (see :func:`pack_float32`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and 2 <= x.numel() // x.shape[-1] <= FLOAT32_PACKED_ROWS:
            return _packed_product(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)


class GemmLinear(PackedLinear):
    """nn.Linear whose every row is computed the same way however many rows come with it: never
    alone (the matrix-vector path), never more than ``max_rows`` at once, and in a prefill, where it has
    ``tile_rows``, always exactly that many (see the module docstring); with its weight packed once
    (:func:`pack_weights`) where that gives the same bits."""

    #: the most rows one product takes (:data:`WIDE_ROWS` where :func:`pack_weights` found that exact)
    max_rows: int = MAX_ROWS

    #: the rows of every product of a prefill (:data:`TILE_ROWS` where :func:`pack_weights` found products of
    #: that size exact from any position while wider ones are not); 0: a prefill in pieces of ``max_rows``
    tile_rows: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if self.tile_rows and getattr(_PHASE, "prefill", False):
            return self._tiles(x, rows)
        if PAD_BELOW <= rows <= self.max_rows:
            return self._product(x)
        flat = x.reshape(rows, -1)
        if rows < PAD_BELOW:  # a decode step of one or two streams: padded with copies of the first row
            return self._product(_padded(flat, MIN_ROWS))[:rows].reshape(*x.shape[:-1], -1)
        pieces = list(flat.split(self.max_rows))  # a prefill in pieces
        outs = [self._product(piece) for piece in pieces[:-1]]
        if pieces[-1].shape[0] == 1:  # a last row alone goes with the row before it
            outs.append(self._product(flat[-2:])[-1:])
        else:
            outs.append(self._product(pieces[-1]))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.reshape(*x.shape[:-1], -1)

    def _tiles(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """A prefill's product in products of exactly ``tile_rows`` rows, the last padded with copies of
        its first row (dropped)."""
        tile, flat = self.tile_rows, x.reshape(rows, -1)
        outs = [self._product(_padded(flat[start : start + tile], tile)) for start in range(0, rows, tile)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out[:rows].reshape(*x.shape[:-1], -1)


def _packed_rows(weight: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor) -> int:
    """How many rows a packed product may take: 0 where it does not give ``F.linear``'s bits at the row
    counts a GemmLinear multiplies (then it is not used), :data:`WIDE_ROWS` where products of 33 to that
    many rows, from any position, also give every row a two-row product's bits, else :data:`MAX_ROWS`.

    Where wide products order their sums differently, perhaps only some rows come out different (about
    one in eight at scale 2, fewer at smaller scales, on an Intel Xeon with AMX): every row of every
    product is compared, over inputs at two scales."""
    generator = torch.Generator().manual_seed(0)

    def product(x: torch.Tensor) -> torch.Tensor:
        return _packed_product(x, packed, bias)

    for rows in (2, MIN_ROWS, 7, MAX_ROWS):
        x = (torch.randn(rows, weight.shape[1], generator=generator) * 0.5).to(weight.dtype)
        if not torch.equal(product(x), F.linear(x, weight, bias)):
            return 0
    for scale in (0.5, 2.0):
        x = (torch.randn(WIDE_ROWS + 7, weight.shape[1], generator=generator) * scale).to(weight.dtype)
        alone: list[torch.Tensor] = []  # row i against itself in a two-row product, made as far as needed
        for start, rows in ((0, MAX_ROWS + 1), (7, 64), (3, 127), (7, WIDE_ROWS)):
            alone += [product(x[row : row + 1].expand(2, -1))[1] for row in range(len(alone), start + rows)]
            if not torch.equal(product(x[start : start + rows]), torch.stack(alone[start : start + rows])):
                return MAX_ROWS
    return WIDE_ROWS


def _tile_rows(weight: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor) -> int:
    """:data:`TILE_ROWS` where a packed product of exactly that many rows gives each row the same bits
    wherever it sits and whatever rows come with it (rows moved down by 1 to ``TILE_ROWS - 1`` places,
    new rows above them, at two input scales), else 0."""
    generator = torch.Generator().manual_seed(1)
    tile = TILE_ROWS
    for scale in (0.5, 2.0):
        x = (torch.randn(2 * tile, weight.shape[1], generator=generator) * scale).to(weight.dtype)
        want = _packed_product(x[:tile], packed, bias)
        for shift in (1, 7, tile // 2, tile - 1):
            moved = torch.cat((x[tile : tile + shift], x[: tile - shift]))
            got = _packed_product(moved, packed, bias)
            if not torch.equal(got[shift:], want[: tile - shift]):
                return 0
    return tile


def _close_rows(weight: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor) -> int:
    """1 where a float32 packed product agrees with ``F.linear`` to float32's rounding at 1, 7, 32 and
    300 rows (its sums are ordered otherwise, as any other kernel's), else 0."""
    generator = torch.Generator().manual_seed(0)
    for rows in (1, 7, MAX_ROWS, 300):
        x = torch.randn(rows, weight.shape[1], generator=generator)
        got = _packed_product(x, packed, bias)
        want = F.linear(x, weight, bias)
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
            return 0
    return 1


def _pack(model: nn.Module, layers: list[PackedLinear], verdict, tiles=None) -> int:
    """Pack each of ``layers``' weights where ``verdict(weight, bias, packed)`` (once per weight shape)
    is not 0, and release each plain weight no other module of ``model`` shares (a
    :class:`Float32Linear` keeps its own for single rows). A :class:`GemmLinear`
    takes the verdict as its ``max_rows`` and, where that is :data:`MAX_ROWS`, ``tiles(weight, bias,
    packed)`` as its ``tile_rows``."""
    owners: dict[int, int] = {}  # how many modules hold each parameter (a tied head shares the embedding's)
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    verdicts: dict[tuple, int] = {}
    tile_rows: dict[tuple, int] = {}
    packed = 0
    with torch.no_grad():
        for layer in layers:
            weight = layer.weight
            shape = (tuple(weight.shape), layer.bias is not None)
            if verdicts.get(shape) == 0:
                continue  # refused for this shape already: no copy to lay out and drop
            candidate = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), MAX_ROWS)
            if shape not in verdicts:
                verdicts[shape] = verdict(weight, layer.bias, candidate)
                wide = tiles is not None and verdicts[shape] == MAX_ROWS
                tile_rows[shape] = tiles(weight, layer.bias, candidate) if wide else 0
            if not verdicts[shape]:
                continue
            layer.packed = candidate
            if isinstance(layer, GemmLinear):
                layer.max_rows, layer.tile_rows = verdicts[shape], tile_rows[shape]
            packed += 1
            if owners[id(weight)] == 1 and not isinstance(layer, Float32Linear):  # the packed copy replaces it
                layer.weight = nn.Parameter(weight.new_empty(0), requires_grad=False)
    return packed


def pack_weights(model: nn.Module, *, tiles: bool = True) -> int:
    """Pack the weight of every bf16 :class:`GemmLinear` of ``model`` on CPU into oneDNN's layout, where
    this CPU and build give the packed product ``F.linear``'s bits (checked once per weight shape, which
    also decides how many rows one product may take), and release each plain weight no other module
    shares. Returns how many were packed. ``tiles``: where wider products are not exact, also check
    whether products of :data:`TILE_ROWS` rows are, for a prefill in tiles (else in pieces of up to 32)."""
    mkldnn = torch.backends.mkldnn
    if not (mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return 0
    layers = [m for m in model.modules() if isinstance(m, GemmLinear) and m.packed is None
              and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"]
    return _pack(model, layers, _packed_rows, _tile_rows if tiles else None)


def pack_float32(model: nn.Module, *, linears: bool = True) -> int:
    """Pack the float32 weights of ``model`` (a causal LM) on CPU into oneDNN's layout, once, where its
    products agree with ``F.linear`` to float32's rounding. ``F.linear`` hands the plain weight to the BLAS
    on every call, whose matrix-matrix path streams it slower than oneDNN's packed product does.

    - The output head (the vocabulary by the hidden size, on the default model a fifth of the weights)
      becomes a :class:`PackedLinear`: its packed copy replaces the plain weight unless the input
      embedding shares it.
    - With ``linears``, every other Linear becomes a :class:`Float32Linear` that keeps its plain weight
      for a single row and for prefills and multiplies 2 to :data:`FLOAT32_PACKED_ROWS` rows on the packed
      copy: one stream's decode step streams its weights fastest through the BLAS's matrix-vector path,
      several streams' through the packed product. This costs a second copy of those weights (427 MB on
      the default model).

    Measured on an AMD EPYC with AVX2 (no AVX512, one thread), the engine alone (`bench/decode_step.py`): a
    decode step of 2, 4 and 8 streams took 0.81x, 0.92x and 0.95x the time, of 1 and 16 streams the same.
    Returns how many were packed."""
    if not torch.backends.mkldnn.is_available():
        return 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layers: list[PackedLinear] = []
    if type(head) is nn.Linear and head.weight.dtype == torch.float32 and head.weight.device.type == "cpu":
        head.__class__ = PackedLinear
        layers.append(head)
    if linears:
        for module in model.modules():
            if (type(module) is nn.Linear and module is not head and module.weight.dtype == torch.float32
                    and module.weight.device.type == "cpu"):
                module.__class__ = Float32Linear
                layers.append(module)
    return _pack(model, layers, _close_rows)


@dataclass
class Segments:
    """Where the prompts of a packed prefill lie: ``shared`` tokens of common prefix first (seen by
    every prompt), then each prompt's own tokens, ``lengths`` of them, one prompt after another. The
    keys also hold, before them all, ``cached`` tokens of that prefix that an earlier pass computed
    (a prefix cache's head): their keys come from the past, they have no queries here."""

    shared: int
    lengths: list[int]
    cached: int = 0
    _masks: list[torch.Tensor] = field(default_factory=list, repr=False)  #: per part, built once for all layers

    def parts(self) -> list[tuple[int, int]]:
        """(start, end) among the queries of the prefix (when there is one) and of each prompt's own tokens."""
        bounds, start = [(0, self.shared)] if self.shared else [], self.shared
        for n in self.lengths:
            bounds.append((start, start + n))
            start += n
        return bounds

    def heads(self) -> list[int]:
        """Per part, how many leading keys it sees besides its own: the cached ones for the prefix,
        the cached and the prefix for a prompt."""
        return [self.cached if start == 0 and self.shared else self.cached + self.shared for start, _ in self.parts()]

    def masks(self, device: torch.device) -> list[torch.Tensor]:
        """Per part, its queries' view of its keys (the head it sees, then its own tokens causally)."""
        if not self._masks:
            for (start, end), head in zip(self.parts(), self.heads()):
                n = end - start
                causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
                self._masks.append(torch.cat([torch.ones(n, head, dtype=torch.bool, device=device), causal], 1)[None, None])
        return self._masks


@dataclass
class DecodeRows:
    """Which columns of a decode step's window each row owns: row ``r`` the last ``lengths[r]`` (its
    cached tokens and the one being decoded); the columns left of them are padding."""

    lengths: list[int]


def _attend_rows(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rows: DecodeRows,
                 scaling: float | None) -> torch.Tensor:
    """One decode step's attention, row by row over each row's own keys only, in float32: the same
    products of the same shapes whether the row decodes alone or beside others of any length, so it
    needs neither a padding mask nor float64, and reads none of the padding. Each row's query heads
    are grouped by the key head they share (grouped-query attention), which makes a row two batched
    matrix products over its key heads: on this model about a third of the time of
    ``F.scaled_dot_product_attention`` for one query, and several times less than the float64 pass
    over the padded window it replaces."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    q = query.float().reshape(batch, kv_heads, heads // kv_heads, dim)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    for r, n in enumerate(rows.lengths):
        k, v = key[r, :, -n:].float(), value[r, :, -n:].float()
        torch.bmm(torch.softmax(torch.bmm(q[r], k.transpose(1, 2)).mul_(scale), -1), v, out=out[r])
    return out.reshape(batch, 1, heads, dim).to(query.dtype)


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, segments: Segments | None, rows: DecodeRows | None,
               accumulate: torch.dtype | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """Row by row for a decode step that says its rows, per prompt for a prefill that says its
    segments, else transformers' SDPA under the mask; in ``accumulate`` (None: the query's dtype)."""
    if rows is not None and query.shape[2] == 1 and len(rows.lengths) == query.shape[0]:
        return _attend_rows(query, key, value, rows, kwargs.get("scaling")), None
    dtype = query.dtype
    if accumulate is not None:
        query, key, value = query.to(accumulate), key.to(accumulate), value.to(accumulate)
    if segments is not None and query.shape[2] == key.shape[2] - segments.cached == sum(segments.lengths) + segments.shared:
        outs = []
        for (start, end), head, mask in zip(segments.parts(), segments.heads(), segments.masks(query.device)):
            own = slice(segments.cached + start, segments.cached + end)
            if head == segments.cached + start:  # the head and its own keys are adjacent: no copy
                k, v = key[:, :, :own.stop], value[:, :, :own.stop]
            else:
                k = torch.cat([key[:, :, :head], key[:, :, own]], 2)
                v = torch.cat([value[:, :, :head], value[:, :, own]], 2)
            outs.append(sdpa_attention_forward(module, query[:, :, start:end], k, v, mask, **kwargs)[0])
        return torch.cat(outs, 1).to(dtype), None
    if accumulate is not None and attention_mask is not None and attention_mask.dtype.is_floating_point:
        attention_mask = attention_mask.to(accumulate)
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return out.to(dtype), weights


def invariant_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, genloom_segments: Segments | None = None,
                 genloom_rows: DecodeRows | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, accumulated in float64 and returned in the query's dtype; per
    prompt when ``genloom_segments`` says where the prompts of a packed prefill lie; row by row in
    float32 when ``genloom_rows`` says which keys each row of a decode step owns."""
    return _attention(module, query, key, value, attention_mask, genloom_segments, genloom_rows, torch.float64,
                      **kwargs)


def layout_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, genloom_segments: Segments | None = None,
                     genloom_rows: DecodeRows | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The attention of a float32 model on CPU: the same layout as :func:`invariant_attention` (a
    decode step row by row over each row's own keys, a packed prefill per prompt) in the model's own
    dtype, which float32 needs no help to keep. It skips what SDPA over the padded window or the
    whole pack spends on masked-out keys (and the key heads' expansion for grouped queries)."""
    return _attention(module, query, key, value, attention_mask, genloom_segments, genloom_rows, None, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, invariant_attention)
    AttentionInterface.register(LAYOUT_ATTENTION, layout_attention)


def optimize_float32(model: nn.Module, *, packed: bool = True) -> nn.Module:
    """A float32 ``model`` on CPU: :func:`layout_attention`, its output head's weight packed and, with
    ``packed``, every other Linear's weight too for products of two rows or more (:func:`pack_float32`).
    In place."""
    _register()
    model.set_attn_implementation(LAYOUT_ATTENTION)
    pack_float32(model, linears=packed)
    return model


def _prefill_call(args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether a causal LM's forward call is a prefill: it says where its prompts lie
    (``genloom_segments``, the engine's prefill, even of one token after a cached head), or it
    computes more than one token per row and does not say its decode rows (``genloom_rows``)."""
    if kwargs.get("genloom_rows") is not None:
        return False
    if kwargs.get("genloom_segments") is not None:
        return True
    tokens = kwargs.get("input_ids", args[0] if args else None)
    if tokens is None:
        tokens = kwargs.get("inputs_embeds")
    return tokens is not None and tokens.dim() >= 2 and tokens.shape[1] > 1


def _mark_phase(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    _PHASE.prefill = _prefill_call(args, kwargs)


def _end_phase(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
    _PHASE.prefill = False


def mark_prefills(model: nn.Module) -> None:
    """Tell ``model``'s :class:`GemmLinear` layers, for each forward call on this thread, whether it is a
    prefill (:func:`_prefill_call`), which multiplies in products of ``tile_rows`` rows where they have
    it. Once per model; the mark is cleared when the call ends, however it ends."""
    if getattr(model, "_genloom_marks_prefills", False):
        return
    model.register_forward_pre_hook(_mark_phase, with_kwargs=True)
    model.register_forward_hook(_end_phase, with_kwargs=True, always_call=True)
    model._genloom_marks_prefills = True


def make_batch_invariant(model: nn.Module, *, tiles: bool = True) -> nn.Module:
    """Make ``model`` (a transformers causal LM) decode the same tokens alone and batched in a reduced
    precision on CPU: every Linear a :class:`GemmLinear` (its weight packed where that is exact, a
    prefill in tiles where ``tiles`` and that is exact), attention :func:`invariant_attention`. In place."""
    _register()
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = GemmLinear
    pack_weights(model, tiles=tiles)
    mark_prefills(model)
    model.set_attn_implementation(ATTENTION)
    return model


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles): bf16 is then the faster
    dtype; without it torch emulates bf16 and float32 is faster."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))

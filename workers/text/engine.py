"""Continuous (iteration-level) batching for a Hugging Face causal LM.

Each :meth:`TextEngine.step`:

1. retires aborted sequences;
2. runs one decode iteration for the whole running batch: one forward pass of ``[rows, 1]``
   tokens over a shared, left-padded :class:`~workers.text.kv_cache.BatchKVCache`, with a
   per-row attention mask and explicit position ids, then samples one token per row;
3. admits waiting sequences in arrival order while the batch has room (``max_batch_size`` rows,
   ``max_batch_tokens`` reserved tokens), prefills them together in one packed forward pass
   (prompts concatenated, their common prefix only once, block causal mask, so no padding; the
   batch-invariant bf16 attention reads where each prompt lies and attends per prompt, skipping the
   masked-out pairs), samples their first token and copies their keys/values into the batch cache. A step
   prefills at most ``max_prefill_tokens`` packed tokens (at least one prompt), so new
   arrivals delay the running sequences by at most that much work, once. On a CPU, where a
   prompt token costs about as much as a decode step's token, keep it small (a few hundred).
   A head the prompts share that an earlier prefill computed (the chat template's system turn, an
   application's fixed instructions) comes from the :class:`~workers.text.prefix_cache.PrefixCache`
   instead (``prefix_cache_tokens``; only between requests with the same ``cache_salt``).

A prefill the engine runs for a lone stream may take more CPU threads than the decode steps
(``prefill_threads``, as llama.cpp's ``--threads-batch``): a prompt's pass is a matrix product of many
rows, which a second core shortens by a third (a chat prompt of about 55 tokens, bf16, AMD EPYC: 105 ms
on one thread, 70 on two; bench/prefill_threads.py), while decode steps run best on fewer beside the
platform's other busy processes. "Lone" means nothing is decoding, one prompt is waiting, and for the
last ``lone_s`` seconds the engine has held no more than one request at a time. Where the platform's
processes share the cores, the extra thread also waits for them: under the whole stack on 2 cores,
switching whenever nothing was decoding took 12 ms off a lone stream's first token but added 50 ms at
four streams, where the first of each wave of arrivals prefilled on both cores while the stack handled
the others; a lone stream's own traffic leaves the second core mostly free. Switching for a lone stream
only took about 10 ms off its first token there and changed nothing at four and sixteen streams (AMD EPYC
with AVX512-BF16, docs/benchmarks.md), so the worker asks for every core (``GENLOOM_TEXT_PREFILL_THREADS=auto``);
an engine built without ``prefill_threads`` never switches. The switch is made only
where a prefill at that many threads gives the bits of one at the engine's own count (or, in float32,
agrees to float32's rounding), checked when the engine is built, so a stream's tokens do not depend on
whether it arrived alone.

Token budget: a sequence reserves ``len(prompt) + max_tokens`` when admitted, so the running
batch never exceeds ``max_batch_tokens`` and nothing ever has to be preempted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from typing import Any, NamedTuple

import torch
from transformers import DynamicCache

from infra.models.invariant import DecodeRows, Segments
from infra.models.llama_decode import llama_decode_step
from schemas.enums import FinishReason
from workers.text.grammar import Grammars
from workers.text.kv_cache import BatchKVCache
from workers.text.prefix_cache import PrefixCache
from workers.text.sampling import SamplingParams, TokenLogprob, adjust_logits, token_logprobs
from workers.text.sequence import Sequence, StepOutput, StepStats

logger = logging.getLogger(__name__)

#: longest an idle step waits for a grammar to compile (the caller's loop gets control back after it)
GRAMMAR_WAIT_S = 0.05
#: a prefill takes ``prefill_threads`` only after the engine has held at most one request at a time for this
#: long (a closed loop of several streams never has: their waves of arrivals stay on the engine's own count)
LONE_S = 2.0


class TextEngine:
    """Pure generation engine: requests in, per-step outputs out. Not thread-safe."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 16,
        max_batch_tokens: int = 8192,
        max_prefill_tokens: int = 2048,
        prefix_cache_tokens: int = 2048,
        prefill_threads: int | None = None,
        lone_s: float = LONE_S,
        device: torch.device | str | None = None,
        direct_decode: bool = True,
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 2 or max_prefill_tokens < 1 or prefix_cache_tokens < 0:
            raise ValueError("max_batch_size and max_prefill_tokens must be >= 1, max_batch_tokens >= 2, "
                             "prefix_cache_tokens >= 0")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_prefill_tokens = max_prefill_tokens
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        config = model.config
        self.context_length = int(config.max_position_embeddings)
        self.vocab_size = int(config.vocab_size)
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        self._cache = BatchKVCache(
            num_layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            max_rows=max_batch_size,
            dtype=next(model.parameters()).dtype,
            device=self.device,
        )
        #: prompt heads already prefilled (0 tokens: off)
        self.prefix_cache = PrefixCache(prefix_cache_tokens)
        self._requests: dict[str, Sequence] = {}  # every unfinished request
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []  # index = row in self._cache
        self._reserved_tokens = 0  # sum of Sequence.reserved_tokens over self._running
        self._pending: list[StepOutput] = []  # outputs to hand out with the next step
        self._grammars: Grammars | None = None  # built with the first constrained request
        self._bitmask: torch.Tensor | None = None  # [max_batch_size, vocab/32] allowed-token bits
        #: a decode step straight through the layers where the model allows it (infra.models.llama_decode:
        #: the same bits as model(...), without its module machinery); None: through model(...)
        self._decode_step = llama_decode_step(model) if direct_decode else None
        #: what the last step computed and how long each part took
        self.last_step = StepStats()
        #: torch threads for a lone stream's prefill (None: the engine's own count throughout)
        self.prefill_threads = self._usable_prefill_threads(prefill_threads)
        #: how long the engine must have held one request at a time before a prefill takes ``prefill_threads``
        self.lone_s = lone_s
        self._crowded_at = -float("inf")  # time.monotonic() of the last step that held more than one request

    # -- requests ---------------------------------------------------------------------------

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Queue a request. Raises ValueError for a duplicate id or a prompt that cannot fit."""
        if request_id in self._requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        prompt = [int(t) for t in prompt_token_ids]
        if not prompt:
            raise ValueError("prompt_token_ids is empty: send at least one token")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        total = len(prompt) + params.max_tokens
        if total > self.context_length:
            raise ValueError(
                f"prompt of {len(prompt)} tokens plus max_tokens={params.max_tokens} exceeds the model's "
                f"context of {self.context_length} tokens: shorten the prompt or lower max_tokens"
            )
        if total > self.max_batch_tokens:
            raise ValueError(
                f"prompt of {len(prompt)} tokens plus max_tokens={params.max_tokens} exceeds the engine's "
                f"max_batch_tokens={self.max_batch_tokens}: shorten the prompt or lower max_tokens"
            )
        seq = Sequence.create(request_id, prompt, params, self.tokenizer, self.device, self.vocab_size)
        if params.grammar is not None:  # compiled in the grammar thread; the sequence waits for it
            seq.grammar_future = self.grammars.submit(params.grammar)
        self._requests[request_id] = seq
        self._waiting.append(seq)

    @property
    def grammars(self) -> Grammars:
        """The grammar compiler and cache for this engine's tokenizer (built on first use)."""
        if self._grammars is None:
            self._grammars = Grammars(self.tokenizer, self.vocab_size, self.eos_token_ids)
            self._bitmask = self._grammars.allocate_bitmask(self.max_batch_size)
        return self._grammars

    def abort(self, request_id: str) -> bool:
        """Stop a request before the next step; its final output (``aborted``) comes from that step.
        Returns False if the id is unknown, finished, or already aborted."""
        seq = self._requests.get(request_id)
        if seq is None or seq.abort_requested:
            return False
        seq.abort_requested = True
        if seq in self._waiting:
            self._waiting.remove(seq)
            self._abort_detached(seq)
        return True

    def has_unfinished(self) -> bool:
        return bool(self._requests or self._pending)

    def num_running(self) -> int:
        return len(self._running)

    def kv_cache_usage(self) -> float:
        """The share of the allocated KV cache cells that hold a running sequence's token (0..1)."""
        cells = self._cache.rows_cap * self._cache.cols_cap
        return sum(seq.num_cached for seq in self._running) / cells if cells else 0.0

    def num_waiting(self) -> int:
        return len(self._waiting)

    # -- the loop ---------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[StepOutput]:
        """Retire aborted sequences, decode one token for every running one, admit new ones."""
        outputs, self._pending = self._pending, []
        aborted = [seq for seq in self._running if seq.abort_requested]
        for seq in aborted:
            seq.aborted = True
            outputs.append(seq.output("", []))
        if aborted:
            self._drop_finished_rows()
        decoded, start = len(self._running), time.perf_counter()
        if decoded + len(self._waiting) > 1:
            self._crowded_at = time.monotonic()
        if self._running:
            self._decode(outputs)
        elif self._waiting:
            self._await_grammars()
        admitting = time.perf_counter()
        with self._prefill_threading() as threads:
            prefilled = self._admit(outputs)
        self.last_step = StepStats(decoded, admitting - start if decoded else 0.0,
                                   prefilled, time.perf_counter() - admitting if prefilled else 0.0,
                                   threads if prefilled else 0)
        return outputs

    @contextlib.contextmanager
    def _prefill_threading(self):
        """Run the block with ``prefill_threads`` torch threads for a lone stream: nothing decoding, and no
        more than one request at a time for ``lone_s``. Yields the thread count the block runs on."""
        own = torch.get_num_threads()
        threads = self.prefill_threads
        if (threads is None or threads == own or self._running or len(self._waiting) != 1
                or time.monotonic() - self._crowded_at < self.lone_s):
            yield own
            return
        torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            torch.set_num_threads(own)

    def _usable_prefill_threads(self, threads: int | None) -> int | None:
        """``threads`` where prefilling with that many torch threads gives what the engine's own count
        gives (checked on a short and a longer prompt), else None. Only a CPU engine has a choice."""
        own = torch.get_num_threads()
        if threads is None or threads == own or self.device.type != "cpu":
            return None
        if threads < 1:
            raise ValueError("prefill_threads must be >= 1")
        exact = next(self.model.parameters()).dtype != torch.float32
        if _prefill_agrees(self.model, self.device, own, threads, exact=exact):
            return threads
        logger.warning("a prefill on %d torch threads does not give the %s of one on %d on this CPU: "
                       "prefilling on %d, as the decode steps do", threads,
                       "bits" if exact else "float32 result", own, own)
        return None

    def _await_grammars(self, timeout: float = GRAMMAR_WAIT_S) -> None:
        """With nothing to decode and only grammars compiling, wait a little for one instead of spinning."""
        pending = [seq.grammar_future for seq in self._waiting if seq.grammar_future is not None]
        if pending and len(pending) == len(self._waiting):
            concurrent.futures.wait(pending, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)

    def _decode(self, outputs: list[StepOutput]) -> None:
        rows = self._running
        width = self._cache.width
        self._cache.reserve(len(rows), width)
        try:
            logits = self._decode_logits(rows, width)
        except Exception as exc:  # a failed forward pass takes the whole batch with it
            logger.exception("decode step failed for %d sequences", len(rows))
            for seq in rows:
                self._fail(seq, exc, outputs)
            self._drop_finished_rows()
            return
        self._cache.advance(1)
        for seq in rows:
            seq.num_cached += 1
        self._sample(rows, logits, outputs)
        self._drop_finished_rows()

    def _decode_logits(self, rows: list[Sequence], width: int, *, direct: bool = True) -> torch.Tensor:
        """The next-token logits ``[rows, vocab]`` of a decode step of ``rows`` over a window of ``width``
        cached columns, their new keys and values written at column ``width`` (committed by the caller).
        ``direct``: through :attr:`_decode_step` where there is one (same bits), else ``model(...)``."""
        cached = torch.tensor([seq.num_cached for seq in rows], device=self.device)
        input_ids = torch.tensor([[seq.output_ids[-1]] for seq in rows], device=self.device)
        own = DecodeRows([seq.num_cached + 1 for seq in rows])
        if direct and self._decode_step is not None:
            return self._decode_step(input_ids, cached[:, None], self._cache, own)[:, -1, :]
        # Row r owns the last cached[r] columns of the window plus the new column at `width`.
        # Without padding (every row spans the window, as when decoding alone) no mask is needed.
        mask = None
        if any(seq.num_cached != width for seq in rows):
            columns = torch.arange(width + 1, device=self.device)
            mask = (columns[None, :] >= (width - cached)[:, None])[:, None, None, :]
        return self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=cached[:, None],
            past_key_values=self._cache,
            cache_position=torch.tensor([width], device=self.device),
            use_cache=True,
            genloom_rows=own,
        ).logits[:, -1, :]

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor, outputs: list[StepOutput]) -> None:
        """One token per row of ``logits`` for ``seqs``: penalties and biases applied batched, greedy
        rows by one argmax, the others by their own sampler; log-probabilities for the rows asking."""
        samplers = [seq.sampler for seq in seqs]
        logits = adjust_logits(logits, samplers)
        constrained = [row for row, seq in enumerate(seqs) if seq.matcher is not None]
        if constrained:  # each constrained row keeps only the tokens its grammar allows next
            logits = logits.float().contiguous()
            for row in constrained:
                self._bitmask[row] = seqs[row].matcher.mask
            self._grammars.apply(logits, self._bitmask, constrained)
        greedy = torch.max(logits, dim=-1).indices.tolist()  # argmax's index (the first of equal maxima); on bf16 CPU logits about 4x faster
        tokens: list[int | None] = []
        # Hot loop: once over the rows, per-row sampling.
        for row, seq in enumerate(seqs):
            try:
                tokens.append(greedy[row] if seq.sampler.greedy else seq.sampler.sample(logits[row]))
            except Exception as exc:
                tokens.append(None)
                self._fail(seq, exc, outputs)
        logprobs = token_logprobs(logits, samplers, [t if t is not None else 0 for t in tokens])
        for seq, token, logprob in zip(seqs, tokens, logprobs):
            if token is None:
                continue
            try:
                outputs.append(self._append_token(seq, token, logprob))
            except Exception as exc:
                self._fail(seq, exc, outputs)

    def _admit(self, outputs: list[StepOutput]) -> int:
        """Prefill the waiting sequences that fit; returns the prompt tokens computed."""
        batch: list[Sequence] = []
        for seq in list(self._waiting):
            if len(self._running) + len(batch) >= self.max_batch_size:
                break
            if not self._grammar_ready(seq, outputs):
                continue  # its grammar is still compiling (or failed): the others do not wait for it
            if self._reserved_tokens + seq.reserved_tokens > self.max_batch_tokens:
                break  # arrival order: do not let later, smaller requests overtake
            if batch and _packed_len([s.prompt_ids for s in (*batch, seq)]) > self.max_prefill_tokens:
                break
            self._waiting.remove(seq)
            batch.append(seq)
            self._reserved_tokens += seq.reserved_tokens
        return self._prefill(batch, outputs) if batch else 0

    def _grammar_ready(self, seq: Sequence, outputs: list[StepOutput]) -> bool:
        """Whether ``seq`` may start: it has no grammar, or its grammar is compiled (then it gets its
        matcher). A grammar that failed to compile ends the sequence with the error."""
        future = seq.grammar_future
        if future is None:
            return True
        if not future.done():
            return False
        seq.grammar_future = None
        try:
            seq.matcher = self.grammars.matcher(future.result())
        except Exception as exc:
            self._waiting.remove(seq)
            self._fail(seq, exc, outputs)
            return False
        return True

    def _prefill(self, batch: list[Sequence], outputs: list[StepOutput]) -> int:
        """Run the prompts of ``batch`` as one packed sequence and move survivors into the batch cache;
        returns the tokens the pass computed.

        Prompts are concatenated without padding. Their longest common prefix (typically the
        chat template's system turn) is packed once, first: every prompt's own tokens attend to
        it and, causally, to themselves through a block mask; their position ids continue from
        the prefix as if each prompt were alone. The part of that prefix (or of a lone prompt,
        all but its last token) the prefix cache holds is not computed again: the pass starts
        after it, with its keys and values as the past.
        """
        prompts = [seq.prompt_ids for seq in batch]
        cached, past = self._cached_head(batch, prompts)
        pack = _pack_prompts(prompts, self.device, cached)
        cache = DynamicCache()
        if past is not None:
            for index, kv in enumerate(past):
                cache.update(kv[0][None], kv[1][None], index)
        try:
            out = self.model(
                input_ids=pack.input_ids,
                attention_mask=pack.attention_mask,
                position_ids=pack.position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=pack.last_index,
                genloom_segments=pack.segments,
            )
        except Exception as exc:
            logger.exception("prefill failed for %d sequences", len(batch))
            for seq in batch:
                self._fail(seq, exc, outputs)
            self._release(batch)
            return pack.input_ids.shape[1]
        layers = out.past_key_values.layers
        shared, offset = pack.shared, pack.shared
        for seq in batch:
            seq.num_cached = len(seq.prompt_ids)
            seq.num_prefix_cached = cached
            self.prefix_cache.count(len(seq.prompt_ids), cached)
        self._sample(batch, out.logits[0], outputs)
        # Hot loop: once over the newly admitted sequences.
        for seq in batch:
            start, offset = offset, offset + seq.num_cached - shared
            try:
                kv = [_own_kv(layer, shared, start, offset) for layer in layers]
                self.prefix_cache.insert(seq.params.cache_salt, seq.prompt_ids, kv)
                if not seq.finished:
                    self._cache.add_row(kv)
                    self._running.append(seq)
            except Exception as exc:
                self._fail(seq, exc, outputs)
        self._release([seq for seq in batch if seq.finished])
        return pack.input_ids.shape[1]

    def _cached_head(self, batch: list[Sequence], prompts: list[list[int]]) -> tuple[int, torch.Tensor | None]:
        """How many leading tokens of the pack the prefix cache holds (whole blocks of the prompts'
        common prefix, or of a lone prompt all but its last token, when all share one salt), and
        their keys and values ``[layers, 2, kv_heads, n, head_dim]``."""
        if not self.prefix_cache.enabled or len({seq.params.cache_salt for seq in batch}) != 1:
            return 0, None
        limit = _common_prefix_len(prompts) if len(prompts) > 1 else len(prompts[0]) - 1
        return self.prefix_cache.match(batch[0].params.cache_salt, prompts[0], limit)

    # -- per-sequence bookkeeping ----------------------------------------------------------

    def _append_token(self, seq: Sequence, token: int, logprob: TokenLogprob | None = None) -> StepOutput:
        """Record a sampled token; detokenise, apply stop rules, and describe the result."""
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
        seq.output_ids.append(token)
        seq.sampler.observe(token)
        eos = token in self.eos_token_ids
        # a grammar that is complete with nothing but EOS allowed next ends the sequence now
        complete = seq.matcher is not None and not eos and seq.matcher.accept(token)
        text, stopped = seq.stop.feed(seq.detokenizer.flush() if eos else seq.detokenizer.push(token))
        if stopped or eos or complete:
            seq.finish_reason = FinishReason.STOP
        elif len(seq.output_ids) >= seq.params.max_tokens:
            seq.finish_reason = FinishReason.LENGTH
        if seq.finished and not stopped:
            tail, stopped = seq.stop.feed(seq.detokenizer.flush())
            text += tail if stopped else tail + seq.stop.flush()
            if stopped:
                seq.finish_reason = FinishReason.STOP
        if seq.finished:
            del self._requests[seq.request_id]
        return seq.output(text, [token], [logprob] if logprob is not None else [])

    def _fail(self, seq: Sequence, exc: BaseException, outputs: list[StepOutput]) -> None:
        logger.warning("request %s failed: %s", seq.request_id, exc)
        seq.error = f"{type(exc).__name__}: {exc}"
        self._requests.pop(seq.request_id, None)
        outputs.append(seq.output("", []))

    def _abort_detached(self, seq: Sequence) -> None:
        """End an aborted sequence that holds no batch row (it was waiting)."""
        seq.aborted = True
        del self._requests[seq.request_id]
        self._pending.append(seq.output("", []))

    def _release(self, seqs: list[Sequence]) -> None:
        for seq in seqs:
            self._reserved_tokens -= seq.reserved_tokens

    def _drop_finished_rows(self) -> None:
        """Remove finished sequences from the batch and compact the cache."""
        keep = [row for row, seq in enumerate(self._running) if not seq.finished]
        if len(keep) == len(self._running):
            return
        self._release([seq for seq in self._running if seq.finished])
        for seq in self._running:
            if seq.finished:
                self._requests.pop(seq.request_id, None)
        self._running = [self._running[row] for row in keep]
        self._cache.keep_rows(keep, max((seq.num_cached for seq in self._running), default=0))


class _Pack(NamedTuple):
    """Model inputs for a packed prefill of several prompts (after the tokens already cached, if any)."""

    input_ids: torch.Tensor  # [1, total - cached]
    position_ids: torch.Tensor  # [1, total - cached]
    attention_mask: torch.Tensor  # [1, 1, total - cached, total] bool, True = attend
    last_index: torch.Tensor  # [prompts]: where each prompt's last token sits among the computed ones
    segments: Segments  # the layout (prefix, each prompt's own tokens), for attention per prompt

    @property
    def shared(self) -> int:
        """Tokens of common prefix at the front, cached or computed."""
        return self.segments.cached + self.segments.shared


def _pack_prompts(prompts: list[list[int]], device: torch.device, cached: int = 0) -> _Pack:
    """Lay out ``prompts`` as: common prefix once, then each prompt's remaining tokens; the first
    ``cached`` tokens (a head of that prefix, or of a lone prompt) are the past, not computed."""
    common = _common_prefix_len(prompts) if len(prompts) > 1 else 0
    if cached > (common if len(prompts) > 1 else len(prompts[0]) - 1):
        raise ValueError(f"{cached} cached tokens exceed the head the prompts share")
    shared = max(common, cached)
    own = torch.tensor([len(p) - shared for p in prompts], device=device)
    ids = prompts[0][:shared] + [t for p in prompts for t in p[shared:]]
    segment = torch.cat([
        torch.full((shared,), -1, device=device),  # -1: the prefix, visible to every prompt
        torch.repeat_interleave(torch.arange(len(prompts), device=device), own),
    ])
    positions = torch.cat([torch.arange(shared, device=device)] + [torch.arange(shared, len(p), device=device) for p in prompts])
    index = torch.arange(len(ids), device=device)
    visible = (segment[cached:, None] == segment[None, :]) | (segment[None, :] == -1)
    mask = visible & (index[None, :] <= index[cached:, None])
    return _Pack(
        input_ids=torch.tensor([ids[cached:]], device=device),
        position_ids=positions[None, cached:],
        attention_mask=mask[None, None],
        last_index=shared - cached + own.cumsum(0) - 1,
        segments=Segments(shared - cached, own.tolist(), cached),
    )


def _common_prefix_len(prompts: list[list[int]]) -> int:
    """Length of the prefix all prompts share, leaving each at least one token of its own."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _packed_len(prompts: list[list[int]]) -> int:
    """Tokens a packed prefill of ``prompts`` computes (the common prefix counts once)."""
    shared = _common_prefix_len(prompts) if len(prompts) > 1 else 0
    return shared + sum(len(p) - shared for p in prompts)


def _own_kv(layer: Any, shared: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence's keys/values from a packed prefill: the shared prefix, then its own tokens."""
    keys, values = layer.keys[0], layer.values[0]
    if shared == 0:
        return keys[:, start:end], values[:, start:end]
    return (
        torch.cat([keys[:, :shared], keys[:, start:end]], dim=1),
        torch.cat([values[:, :shared], values[:, start:end]], dim=1),
    )


#: prompt lengths the prefill-threads check runs: products of at most 32 rows and wider ones
_THREAD_CHECK_LENGTHS = (5, 48)


@torch.inference_mode()
def _prefill_agrees(model: Any, device: torch.device, own: int, threads: int, *, exact: bool) -> bool:
    """Whether prefilling on ``threads`` torch threads gives the logits and the keys and values of a
    prefill on ``own``: bit for bit (``exact``) or to float32's rounding. Two prompts, each alone and
    then packed together, as the engine prefills them."""
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    prompts = [torch.randint(0, vocab, (length,), generator=generator).tolist() for length in _THREAD_CHECK_LENGTHS]
    packs = [_pack_prompts([prompt], device) for prompt in prompts] + [_pack_prompts(prompts, device)]
    results: dict[int, list[list[torch.Tensor]]] = {own: [], threads: []}
    try:
        for count in (own, threads):
            torch.set_num_threads(count)
            for pack in packs:  # as _prefill calls the model: each prompt alone, then both packed
                out = model(input_ids=pack.input_ids, attention_mask=pack.attention_mask, position_ids=pack.position_ids,
                            past_key_values=DynamicCache(), use_cache=True, genloom_segments=pack.segments)
                layers = out.past_key_values.layers
                results[count].append([out.logits, *(layer.keys for layer in layers), *(layer.values for layer in layers)])
    finally:
        torch.set_num_threads(own)
    for want, got in zip(results[own], results[threads]):
        for a, b in zip(want, got):
            same = torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
            if not same:
                return False
    return True


def _eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids from the generation config and the tokenizer (either may list several)."""
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(t) for t in source)
    return frozenset(ids)

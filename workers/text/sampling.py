"""Per-request sampling settings and the sampler that draws one token from a logits row."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from workers.text.grammar import GrammarSpec

#: Most stop strings one request may set (each is checked on every generated token).
MAX_STOP_STRINGS = 16
#: Longest stop string accepted, in characters.
MAX_STOP_STRING_CHARS = 256
#: Seeds are stored in a torch.Generator, which takes unsigned 64-bit values.
_MAX_SEED = 2**64 - 1
#: OpenAI's ranges: penalties in [-2, 2], logit biases in [-100, 100].
MAX_PENALTY = 2.0
MAX_LOGIT_BIAS = 100.0
#: Most alternatives reported per token (`top_logprobs`).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled. ``temperature == 0`` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int | None = None
    #: subtracted once from the logit of every token already in the completion
    presence_penalty: float = 0.0
    #: subtracted from a token's logit per time it is already in the completion
    frequency_penalty: float = 0.0
    #: token id -> added to its logit before sampling (-100 bans it, 100 forces it)
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    #: report the chosen token's log-probability on every step
    logprobs: bool = False
    #: and this many most likely alternatives with theirs (needs logprobs)
    top_logprobs: int = 0
    #: the grammar the output must match (grammar-constrained decoding), or None
    grammar: GrammarSpec | None = None
    #: requests share cached prompt heads (the engine's prefix cache) only when their salts are equal:
    #: the handler gives the tenant, so one tenant's timings never tell what another's prompts began with
    cache_salt: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            raise ValueError("stop must be a list of strings, not a single string: use stop=[...]")
        object.__setattr__(self, "stop", tuple(self.stop))  # frozen: store an immutable copy
        object.__setattr__(self, "logit_bias", dict(self.logit_bias))
        _validate(self)

    @property
    def adjusts_logits(self) -> bool:
        """Whether penalties or biases change the logits before sampling."""
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _validate(p: SamplingParams) -> None:
    if isinstance(p.max_tokens, bool) or not isinstance(p.max_tokens, int) or p.max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {p.max_tokens!r}")
    if not isinstance(p.temperature, (int, float)) or not math.isfinite(p.temperature) or p.temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {p.temperature!r}")
    if not isinstance(p.top_p, (int, float)) or not 0.0 < p.top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p.top_p!r}; use 1.0 to disable nucleus sampling")
    if len(p.stop) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(p.stop)}")
    for s in p.stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"each stop string must be a non-empty string, got {s!r}")
        if len(s) > MAX_STOP_STRING_CHARS:
            raise ValueError(f"stop strings are limited to {MAX_STOP_STRING_CHARS} characters, got {len(s)}")
    if p.seed is not None and (isinstance(p.seed, bool) or not isinstance(p.seed, int) or not 0 <= p.seed <= _MAX_SEED):
        raise ValueError(f"seed must be an integer in [0, 2**64 - 1] or None, got {p.seed!r}")
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(p, name)
        if not isinstance(value, (int, float)) or not -MAX_PENALTY <= value <= MAX_PENALTY:
            raise ValueError(f"{name} must be in [-{MAX_PENALTY:g}, {MAX_PENALTY:g}], got {value!r}")
    for token, bias in p.logit_bias.items():
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise ValueError(f"logit_bias keys must be token ids (integers >= 0), got {token!r}")
        if not isinstance(bias, (int, float)) or not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
            raise ValueError(f"logit_bias values must be in [-100, 100], got {bias!r} for token {token}")
    if isinstance(p.top_logprobs, bool) or not isinstance(p.top_logprobs, int) \
            or not 0 <= p.top_logprobs <= MAX_TOP_LOGPROBS:
        raise ValueError(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {p.top_logprobs!r}")
    if p.top_logprobs and not p.logprobs:
        raise ValueError("top_logprobs needs logprobs=true")


class Sampler:
    """Draws tokens for one request with its own ``torch.Generator``.

    The generator belongs to the request, so a seeded request draws the same random numbers
    whether it runs alone or next to others in a batch.
    """

    def __init__(self, params: SamplingParams, device: torch.device, vocab_size: int | None = None) -> None:
        self.greedy = params.greedy
        self.temperature = float(params.temperature)
        self.top_p = float(params.top_p)
        self.logprobs = params.logprobs
        self.top_logprobs = params.top_logprobs
        self.generator: torch.Generator | None = None
        #: penalties and bias (see adjust_logits): the completion's token counts and a dense bias row
        self.adjusts = params.adjusts_logits
        self.presence = float(params.presence_penalty)
        self.frequency = float(params.frequency_penalty)
        self.counts: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        if self.adjusts:
            if vocab_size is None:
                raise ValueError("penalties and logit_bias need the vocabulary size")
            unknown = [t for t in params.logit_bias if t >= vocab_size]
            if unknown:
                raise ValueError(f"logit_bias names token ids outside the vocabulary [0, {vocab_size}): {unknown[:5]}")
            self.counts = torch.zeros(vocab_size, device=device)
            self.bias = torch.zeros(vocab_size, device=device)
            if params.logit_bias:
                ids = torch.tensor(list(params.logit_bias), device=device)
                self.bias[ids] = torch.tensor(list(params.logit_bias.values()), device=device, dtype=torch.float32)
        if not self.greedy:
            seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little")
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed)

    def sample(self, logits: torch.Tensor) -> int:
        """One token id from a ``[vocab]`` logits row."""
        if self.greedy:
            return int(torch.argmax(logits))
        scaled = logits.float() / self.temperature
        if self.top_p >= 1.0:
            probs = torch.softmax(scaled, dim=-1)
            return int(torch.multinomial(probs, 1, generator=self.generator))
        sorted_logits, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
        outside = (torch.cumsum(probs, dim=-1) - probs) >= self.top_p
        probs = probs.masked_fill(outside, 0.0)
        pick = torch.multinomial(probs, 1, generator=self.generator)
        return int(order[pick])

    def observe(self, token: int) -> None:
        """Count a token the completion now holds (for the penalties)."""
        if self.counts is not None:
            self.counts[token] += 1


def adjust_logits(logits: torch.Tensor, samplers: Sequence[Sampler]) -> torch.Tensor:
    """The ``[batch, vocab]`` logits with each row's penalties and bias applied, batched.

    Rows whose sampler adjusts nothing are left as they are (and the input is returned untouched
    when no row adjusts), so greedy rows without these settings pick the same tokens alone or batched.
    """
    rows = [i for i, s in enumerate(samplers) if s.adjusts]
    if not rows:
        return logits
    group = [samplers[i] for i in rows]
    index = torch.tensor(rows, device=logits.device)
    counts = torch.stack([s.counts for s in group])
    frequency = torch.tensor([s.frequency for s in group], device=logits.device)[:, None]
    presence = torch.tensor([s.presence for s in group], device=logits.device)[:, None]
    sub = logits.index_select(0, index).float()
    sub = sub - frequency * counts - presence * (counts > 0) + torch.stack([s.bias for s in group])
    return logits.float().index_copy(0, index, sub)


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability, and the most likely alternatives' (``top``: id, logprob)."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()

    def described(self, text_of) -> dict:
        """As the `TokenLogprob` event entry, with ``text_of(token_id)`` giving each token's text."""
        def entry(token_id: int, logprob: float) -> dict:
            text = text_of(token_id)
            return {"token": text, "logprob": max(logprob, -9999.0), "bytes": list(text.encode())}
        return {**entry(self.token_id, self.logprob), "top_logprobs": [entry(t, lp) for t, lp in self.top]}


def token_logprobs(logits: torch.Tensor, samplers: Sequence[Sampler], tokens: Sequence[int]) -> list[TokenLogprob | None]:
    """Per row, the log-probability of its chosen token (and its top alternatives) under the adjusted
    logits, for the rows that asked (None for the others); one log-softmax over those rows."""
    rows = [i for i, s in enumerate(samplers) if s.logprobs]
    result: list[TokenLogprob | None] = [None] * len(samplers)
    if not rows:
        return result
    index = torch.tensor(rows, device=logits.device)
    logp = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    chosen = logp.gather(1, torch.tensor([[tokens[i]] for i in rows], device=logits.device)).squeeze(1).tolist()
    k = max(samplers[i].top_logprobs for i in rows)
    top_v, top_i = (logp.topk(k, dim=-1) if k else (None, None))
    for j, i in enumerate(rows):
        n = samplers[i].top_logprobs
        top = tuple(zip(top_i[j, :n].tolist(), top_v[j, :n].tolist())) if n else ()
        result[i] = TokenLogprob(token_id=int(tokens[i]), logprob=float(chosen[j]), top=top)
    return result

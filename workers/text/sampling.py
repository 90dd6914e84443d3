"""Per-request sampling settings and the sampler that draws one token from a logits row."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

#: Most stop strings one request may set (each is checked on every generated token).
MAX_STOP_STRINGS = 16
#: Longest stop string accepted, in characters.
MAX_STOP_STRING_CHARS = 256
#: Seeds are stored in a torch.Generator, which takes unsigned 64-bit values.
_MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled. ``temperature == 0`` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            raise ValueError("stop must be a list of strings, not a single string: use stop=[...]")
        object.__setattr__(self, "stop", tuple(self.stop))  # frozen: store an immutable copy
        _validate(self)

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


class Sampler:
    """Draws tokens for one request with its own ``torch.Generator``.

    The generator belongs to the request, so a seeded request draws the same random numbers
    whether it runs alone or next to others in a batch.
    """

    def __init__(self, params: SamplingParams, device: torch.device) -> None:
        self.greedy = params.greedy
        self.temperature = float(params.temperature)
        self.top_p = float(params.top_p)
        self.generator: torch.Generator | None = None
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

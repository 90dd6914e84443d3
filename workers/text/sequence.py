"""One request's generation state, and what a step reports about it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from concurrent.futures import Future
from typing import Any

from schemas.enums import FinishReason
from workers.text.detokenizer import IncrementalDetokenizer
from workers.text.sampling import Sampler, SamplingParams, TokenLogprob
from workers.text.stop import StopStringMatcher


@dataclass(frozen=True)
class StepStats:
    """What one engine step computed and how long each part took: a decode of ``decode_tokens``
    rows (one token each), and a prefill of ``prefill_tokens`` prompt tokens (those the prefix
    cache supplied are not counted: they were not computed) on ``prefill_threads`` torch threads."""

    decode_tokens: int = 0
    decode_s: float = 0.0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    #: the torch threads the prefill ran on (0: no prefill this step)
    prefill_threads: int = 0

    @property
    def tokens(self) -> int:
        """Tokens the step ran through the model (vLLM's iteration tokens)."""
        return self.decode_tokens + self.prefill_tokens


@dataclass
class StepOutput:
    """What one engine step produced for one request.

    A finished request ended in exactly one way: ``finish_reason`` (STOP: an EOS token or a stop
    string; LENGTH: ``max_tokens`` reached) when it completed, ``aborted`` when the caller aborted
    it, or ``error`` when it failed (the others in the batch carried on).
    """

    request_id: str
    text_delta: str
    token_ids: list[int]
    finished: bool
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    #: of the prompt's tokens, how many the prefix cache supplied (not computed again)
    cached_tokens: int = 0
    aborted: bool = False
    error: str | None = None
    #: ``time.monotonic()`` when the request was added.
    arrival_time: float = 0.0
    #: ``time.monotonic()`` when its first completion token was sampled (None before that).
    first_token_time: float | None = None
    #: one per token of ``token_ids`` when the request asked for logprobs, else empty
    logprobs: list[TokenLogprob] = field(default_factory=list)
    #: the tool calls an engine server returned (schemas.requests.ToolCall), on the last output
    tool_calls: list[Any] | None = None


@dataclass(eq=False)
class Sequence:
    """Mutable per-request state owned by the engine (compared by identity)."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sampler: Sampler
    detokenizer: IncrementalDetokenizer
    stop: StopStringMatcher
    output_ids: list[int] = field(default_factory=list)
    #: Tokens whose keys/values are in the cache; the last sampled token is not yet among them.
    num_cached: int = 0
    #: of the prompt's tokens, how many the prefix cache supplied (set when it is prefilled)
    num_prefix_cached: int = 0
    #: STOP or LENGTH once it completed
    finish_reason: FinishReason | None = None
    #: set once it ended by an abort
    aborted: bool = False
    #: set once it failed
    error: str | None = None
    abort_requested: bool = False
    #: the grammar being compiled for it (it waits until this is done), then its matcher
    grammar_future: Future | None = None
    matcher: Any = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None

    @classmethod
    def create(cls, request_id: str, prompt_ids: list[int], params: SamplingParams, tokenizer: Any, device: Any,
               vocab_size: int | None = None) -> Sequence:
        return cls(
            request_id=request_id,
            prompt_ids=prompt_ids,
            params=params,
            sampler=Sampler(params, device, vocab_size),
            detokenizer=IncrementalDetokenizer(tokenizer, prompt_ids),
            stop=StopStringMatcher(params.stop),
        )

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None or self.aborted or self.error is not None

    @property
    def reserved_tokens(self) -> int:
        """Cache footprint this sequence may reach: prompt plus all its completion tokens."""
        return len(self.prompt_ids) + self.params.max_tokens

    def output(self, text_delta: str, token_ids: list[int], logprobs: list[TokenLogprob] | None = None) -> StepOutput:
        return StepOutput(
            request_id=self.request_id,
            text_delta=text_delta,
            token_ids=token_ids,
            finished=self.finished,
            finish_reason=self.finish_reason,
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=len(self.output_ids),
            cached_tokens=self.num_prefix_cached,
            aborted=self.aborted,
            error=self.error,
            arrival_time=self.arrival_time,
            first_token_time=self.first_token_time,
            logprobs=logprobs or [],
        )

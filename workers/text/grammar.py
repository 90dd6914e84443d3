"""Grammar-constrained decoding with xgrammar: what a sequence's output must match, compiled grammars
cached by hash, and one matcher per sequence.

xgrammar was chosen by measurement against llguidance and outlines-core (bench/structured_output.py,
docs/benchmarks.md). A `GrammarSpec` is plain data: it travels in `SamplingParams` to the engine,
wherever the engine runs. `Grammars` compiles specs for one tokenizer in a thread of its own (never on
an event loop, never inside an engine step) and keeps the most recently used compiled grammars.
A `Matcher` follows one sequence: it computes the next allowed-token mask as soon as a token is
accepted, so it can tell at once when the grammar is complete and nothing but EOS may follow.

Tool calls are JSON objects ``{"name": ..., "arguments": {...}}``: `tool_call` allows one call of the
listed tools (or, with parallel tool calls, 1 to `calls` of them, one object per line); `tool_or_text`
(tool_choice auto) allows either those calls or free text that does not start with ``{``, so the
model's first token decides which it answers with.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import torch

from schemas.enums import ResponseFormatType, ToolChoice
from schemas.requests import TextParams

#: most compiled grammars kept per engine (a compiled JSON schema grammar is tens to hundreds of KB)
GRAMMAR_CACHE_SIZE = 64
#: the most tool calls one turn may hold when parallel tool calls are on
MAX_PARALLEL_CALLS = 4
#: what separates parallel tool calls
_CALL_SEPARATOR_EBNF = 'root ::= "\\n"'
#: free text that cannot be mistaken for a tool call: anything that does not start with "{" or blank
_TEXT_EBNF = 'root ::= [^{ \\t\\r\\n] [^]*'

GrammarKind = Literal["json_object", "json_schema", "tool_call", "tool_or_text"]


class GrammarError(ValueError):
    """A schema that cannot be compiled into a grammar (names what was wrong)."""


@dataclass(frozen=True)
class GrammarSpec:
    """What a sequence's output must match. ``schema`` is the JSON text of a JSON Schema (for
    json_schema, and for the tool-call object of tool_call / tool_or_text); empty for json_object."""

    kind: GrammarKind
    schema: str = ""
    #: tool_call / tool_or_text: the most calls the output may hold (1 unless parallel tool calls are on)
    calls: int = 1

    @property
    def key(self) -> str:
        """The cache key: a hash of the kind, the number of calls and the schema text."""
        return hashlib.sha256(f"{self.kind}\0{self.calls}\0{self.schema}".encode()).hexdigest()


def json_schema_spec(schema: dict[str, Any]) -> GrammarSpec:
    return GrammarSpec("json_schema", json.dumps(schema, sort_keys=True, separators=(",", ":")))


def tool_call_schema(tools: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The JSON Schema of one call of any of `tools` (name, parameters schema)."""
    calls = [{
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    } for name, parameters in tools]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def tool_call_spec(tools: list[tuple[str, dict[str, Any]]], *, optional: bool, calls: int = 1) -> GrammarSpec:
    """1 to `calls` calls of any of `tools`, one per line; with `optional` (tool_choice auto) free text is
    allowed instead."""
    schema = json.dumps(tool_call_schema(tools), sort_keys=True, separators=(",", ":"))
    return GrammarSpec("tool_or_text" if optional else "tool_call", schema, calls)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:500]


class Grammars:
    """Compiles `GrammarSpec`s for one tokenizer, off the caller's thread, with a bounded LRU cache."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: frozenset[int], *,
                 cache_size: int = GRAMMAR_CACHE_SIZE) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=sorted(eos_token_ids))
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self._compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar")
        self._words = (vocab_size + 31) // 32
        # bit masks of the EOS tokens, to tell "only EOS may follow" from a mask in one comparison
        self._eos_mask = torch.zeros(self._words, dtype=torch.int32)
        for token in eos_token_ids:
            if token < vocab_size:
                self._eos_mask[token // 32] |= _bit(token % 32)

    def submit(self, spec: GrammarSpec) -> Future:
        """A future of the compiled grammar (already done when it is cached)."""
        with self._lock:
            compiled = self._cache.get(spec.key)
            if compiled is not None:
                self._cache.move_to_end(spec.key)
        if compiled is not None:
            done: Future = Future()
            done.set_result(compiled)
            return done
        return self._pool.submit(self.compile, spec)

    def compile(self, spec: GrammarSpec) -> Any:
        """Compile `spec` (blocking; cached). Raises GrammarError."""
        with self._lock:
            if spec.key in self._cache:
                self._cache.move_to_end(spec.key)
                return self._cache[spec.key]
        try:
            compiled = self._compile(spec)
        except GrammarError:
            raise
        except Exception as exc:
            raise GrammarError(f"the schema cannot be compiled into a grammar: {_first_line(exc)}") from None
        with self._lock:
            self._cache[spec.key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, spec: GrammarSpec) -> Any:
        xgr = self._xgr
        if spec.kind == "json_object":
            return self._compiler.compile_json_schema('{"type": "object"}', any_whitespace=False)
        if spec.kind == "json_schema" or (spec.kind == "tool_call" and spec.calls == 1):
            return self._compiler.compile_json_schema(spec.schema, any_whitespace=False, strict_mode=True)
        if spec.kind in ("tool_call", "tool_or_text"):
            call = xgr.Grammar.from_json_schema(spec.schema, any_whitespace=False, strict_mode=True)
            calls = call
            if spec.calls > 1:  # one call, or two on two lines, ... up to spec.calls
                separator = xgr.Grammar.from_ebnf(_CALL_SEPARATOR_EBNF)
                calls = xgr.Grammar.union(*(xgr.Grammar.concat(*([call] + [separator, call] * k))
                                            for k in range(spec.calls)))
            if spec.kind == "tool_call":
                return self._compiler.compile_grammar(calls)
            return self._compiler.compile_grammar(xgr.Grammar.union(calls, xgr.Grammar.from_ebnf(_TEXT_EBNF)))
        raise GrammarError(f"unknown grammar kind {spec.kind!r}")

    def matcher(self, compiled: Any) -> Matcher:
        return Matcher(self, self._xgr.GrammarMatcher(compiled))

    def allocate_bitmask(self, rows: int) -> torch.Tensor:
        return self._xgr.allocate_token_bitmask(rows, self.vocab_size)

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor, rows: list[int]) -> None:
        """Mask, in place, the ``rows`` of ``[batch, vocab]`` float32 logits with their rows of ``bitmask``."""
        self._xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size, indices=rows)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _bit(index: int) -> int:
    """Bit `index` of an int32 word (bit 31 is the sign bit)."""
    return (1 << index) if index < 31 else -(1 << 31)


class Matcher:
    """One sequence's grammar state. ``mask`` always holds the tokens allowed next."""

    def __init__(self, grammars: Grammars, matcher: Any) -> None:
        self._grammars = grammars
        self._matcher = matcher
        self.mask = grammars.allocate_bitmask(1)[0]
        self._fill()

    def _fill(self) -> None:
        self._matcher.fill_next_token_bitmask(self.mask.unsqueeze(0))

    def accept(self, token: int) -> bool:
        """Advance by the sampled `token`. Returns True when the grammar is complete and no token but
        EOS may follow (the sequence should finish). Raises GrammarError for a token the grammar refuses."""
        if not self._matcher.accept_token(token):
            raise GrammarError(f"token {token} does not follow the grammar")
        if self._matcher.is_terminated():
            return True
        self._fill()
        return bool(self._matcher.is_completed()) and not bool(((self.mask & ~self._grammars._eos_mask) != 0).any())


def grammar_for(params: TextParams) -> GrammarSpec | None:
    """The grammar a chat job's output must follow: its response_format, or a tool call when it may or
    must call one of its tools; None when its output is free."""
    fmt = params.response_format
    if fmt is not None:
        if fmt.type is ResponseFormatType.JSON_SCHEMA:
            return json_schema_spec(fmt.json_schema or {})
        return GrammarSpec("json_object")
    if not params.calls_tools:
        return None
    tools = [(t.name, t.parameters) for t in params.tools
             if params.tool_choice is not ToolChoice.FUNCTION or t.name == params.tool_name]
    return tool_call_spec(tools, optional=params.tool_choice is ToolChoice.AUTO,
                          calls=MAX_PARALLEL_CALLS if params.parallel_tool_calls else 1)

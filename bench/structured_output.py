"""Grammar-constrained JSON decoding: xgrammar vs llguidance vs outlines-core, from one run.

Each candidate constrains greedy decoding of SmolLM2-135M-Instruct to a JSON Schema, for ~10 schemas
(nested objects, enums, arrays, numbers, required fields). Unconstrained decoding of the same
prompts is the baseline. Reported per candidate: compile time per schema (tokenizer-bound grammar,
cold: each schema once, caches off where the library has one), per-token overhead of the mask
(computing the allowed-token bitmask, applying it to the logits row and advancing the matcher with
the chosen token), and correctness: the share of outputs that parse as JSON and validate against
their schema with `jsonschema`. The model, prompts and forward passes are the same for every
candidate. Writes ``bench/results/structured_output.json``.

    PYTHONPATH=. .venv/bin/python bench/structured_output.py [--max-tokens 160] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jsonschema  # noqa: E402
import torch  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from infra.models.loader import load_text_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "structured_output.json"

#: (name, prompt, schema): nested objects, enums, arrays, numbers, required fields
SCHEMAS: list[tuple[str, str, dict[str, Any]]] = [
    ("flat", "Describe a person named Ada who is 36.", {
        "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"], "additionalProperties": False}),
    ("enum", "Classify the sentiment of: 'I love this phone'.", {
        "type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]}},
        "required": ["sentiment"], "additionalProperties": False}),
    ("numbers", "Give the coordinates of Paris.", {
        "type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                         "lon": {"type": "number", "minimum": -180, "maximum": 180}},
        "required": ["lat", "lon"], "additionalProperties": False}),
    ("array", "List three fruits.", {
        "type": "object", "properties": {"fruits": {"type": "array", "items": {"type": "string"},
                                                    "minItems": 1, "maxItems": 5}},
        "required": ["fruits"], "additionalProperties": False}),
    ("nested", "Describe a book and its author.", {
        "type": "object", "properties": {
            "title": {"type": "string"},
            "author": {"type": "object", "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
                       "required": ["name", "born"], "additionalProperties": False},
            "year": {"type": "integer"}},
        "required": ["title", "author", "year"], "additionalProperties": False}),
    ("array_of_objects", "List two cities with their populations.", {
        "type": "object", "properties": {"cities": {"type": "array", "maxItems": 3, "items": {
            "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"], "additionalProperties": False}}},
        "required": ["cities"], "additionalProperties": False}),
    ("boolean_null", "Is water wet? Answer with a reason.", {
        "type": "object", "properties": {"answer": {"type": "boolean"}, "reason": {"type": ["string", "null"]}},
        "required": ["answer", "reason"], "additionalProperties": False}),
    ("tool_call", "What is the weather in Oslo? Call the weather tool.", {
        "type": "object", "properties": {
            "name": {"const": "get_weather"},
            "arguments": {"type": "object", "properties": {
                "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"], "additionalProperties": False}},
        "required": ["name", "arguments"], "additionalProperties": False}),
    ("optional_fields", "Describe a laptop for sale.", {
        "type": "object", "properties": {"model": {"type": "string"}, "price": {"type": "number"},
                                         "in_stock": {"type": "boolean"}, "tags": {"type": "array",
                                                                                   "items": {"type": "string"}}},
        "required": ["model", "price"], "additionalProperties": False}),
    ("json_object", "Describe the moon as a JSON object.", {"type": "object"}),
]


# -- the candidates: compile(schema) -> state; each token: fill the mask, apply it, advance -------


class XGrammar:
    name = "xgrammar 0.2.8"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, self.info.vocab_size)

    def compile(self, schema: dict) -> Any:
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def mask(self, matcher: Any, logits: torch.Tensor) -> None:
        matcher.fill_next_token_bitmask(self.bitmask)
        self.xgr.apply_token_bitmask_inplace(logits, self.bitmask)

    def advance(self, matcher: Any, token: int) -> bool:
        """Accept `token`; True when the grammar is complete (nothing but EOS may follow)."""
        if not matcher.accept_token(token):
            raise RuntimeError(f"xgrammar refused token {token}")
        return matcher.is_terminated()


class LLGuidance:
    name = "llguidance 1.9.1"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.ll = llguidance
        self.tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.tok.vocab_size)

    def compile(self, schema: dict) -> Any:
        grammar = self.ll.LLMatcher.grammar_from_json_schema(
            schema, defaults={"whitespace_flexible": False})
        # llguidance compiles lazily: building the matcher is the compile step
        matcher = self.ll.LLMatcher(self.tok, grammar)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def matcher(self, compiled: Any) -> Any:
        return compiled

    def mask(self, matcher: Any, logits: torch.Tensor) -> None:
        self.ll.torch.fill_next_token_bitmask(matcher, self.bitmask, 0)
        self.ll.torch.apply_token_bitmask_inplace(logits, self.bitmask)

    def advance(self, matcher: Any, token: int) -> bool:
        if not matcher.consume_token(token):
            raise RuntimeError(f"llguidance refused token {token}: {matcher.get_error()}")
        return matcher.is_stopped()


class OutlinesCore:
    name = "outlines-core 0.2.14"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import outlines_core
        from outlines_core.json_schema import build_regex_from_schema
        from outlines_core.kernels import torch as kernels

        self.oc, self.regex_of, self.kernels = outlines_core, build_regex_from_schema, kernels
        self.vocabulary = outlines_core.Vocabulary(tokenizer.eos_token_id, _byte_vocabulary(tokenizer))
        self.bitmask = kernels.allocate_token_bitmask(vocab_size)

    def compile(self, schema: dict) -> Any:
        return self.oc.Index(self.regex_of(json.dumps(schema)), self.vocabulary)

    def matcher(self, compiled: Any) -> Any:
        return self.oc.Guide(compiled)

    def mask(self, matcher: Any, logits: torch.Tensor) -> None:
        self.kernels.fill_next_token_bitmask(matcher, self.bitmask)
        self.kernels.apply_token_bitmask_inplace(logits, self.bitmask)

    def advance(self, matcher: Any, token: int) -> bool:
        matcher.advance(token)
        return matcher.is_finished() and len(matcher.get_tokens()) <= 1


def _byte_vocabulary(tokenizer: Any) -> dict[bytes, list[int]]:
    """Token bytes -> ids for a byte-level BPE tokenizer (special tokens and EOS left out)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    decode = {c: b for b, c in bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    vocab: dict[bytes, list[int]] = {}
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in special:
            continue
        try:
            raw = bytes(decode[c] for c in token)
        except KeyError:
            continue
        vocab.setdefault(raw, []).append(token_id)
    return vocab


# -- the run -------------------------------------------------------------------------------------------


def _prompt(loaded: Any, question: str, schema: dict) -> list[int]:
    return loaded.format_chat([
        {"role": "system", "content": "Answer only with one JSON object that follows this JSON Schema: "
                                      + json.dumps(schema)},
        {"role": "user", "content": question}])


@torch.inference_mode()
def decode(model: Any, prompt: list[int], eos: set[int], max_tokens: int, backend: Any = None,
           matcher: Any = None) -> tuple[list[int], list[float]]:
    """Greedy tokens for `prompt` (constrained by `matcher` when given) and the per-token mask seconds."""
    cache = DynamicCache()
    ids = torch.tensor([prompt])
    tokens: list[int] = []
    overhead: list[float] = []
    for _ in range(max_tokens):
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1:, :].float()
        start = time.perf_counter()
        if matcher is not None:
            backend.mask(matcher, logits)
        token = int(torch.argmax(logits[0]))
        done = token in eos
        if matcher is not None and not done:
            done = backend.advance(matcher, token)
        if matcher is not None:
            overhead.append(time.perf_counter() - start)
        if token in eos:
            break
        tokens.append(token)
        if done:
            break
        ids = torch.tensor([[token]])
    return tokens, overhead


def check(text: str, schema: dict) -> tuple[bool, bool]:
    """(parses, validates)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False, False
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return True, False
    return True, True


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    loaded = load_text_model()
    model, tokenizer = loaded.model, loaded.tokenizer
    vocab_size = int(model.config.vocab_size)
    eos = {int(tokenizer.eos_token_id)}
    prompts = [(name, _prompt(loaded, question, schema), schema) for name, question, schema in SCHEMAS]
    decode(model, prompts[0][1], eos, 2)  # warm up
    results: dict[str, Any] = {}

    def measure(label: str, backend: Any) -> None:
        rows, compile_s, overhead, errors = [], [], [], []
        for name, prompt, schema in prompts:
            try:
                matcher = None
                if backend is not None:
                    start = time.perf_counter()
                    compiled = backend.compile(schema)
                    compile_s.append(time.perf_counter() - start)
                    matcher = backend.matcher(compiled)
                tokens, spent = decode(model, prompt, eos, args.max_tokens, backend, matcher)
            except Exception as exc:  # a candidate that cannot compile or follow a schema: counted, not fatal
                errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                rows.append({"schema": name, "error": errors[-1]})
                continue
            text = tokenizer.decode(tokens)
            parses, valid = check(text, schema)
            overhead += spent
            rows.append({"schema": name, "tokens": len(tokens), "parses": parses, "valid": valid,
                         "text": text[:300]})
            print(f"  {label:24s} {name:18s} tokens={len(tokens):3d} valid={valid} {text[:70]!r}", flush=True)
        n = len(prompts)
        results[label] = {
            "schemas": n,
            "parses": sum(1 for r in rows if r.get("parses")),
            "valid": sum(1 for r in rows if r.get("valid")),
            "errors": errors,
            "compile_ms_p50": round(statistics.median(compile_s) * 1000, 2) if compile_s else None,
            "compile_ms_max": round(max(compile_s) * 1000, 2) if compile_s else None,
            "mask_us_per_token_p50": round(statistics.median(overhead) * 1e6, 1) if overhead else None,
            "mask_us_per_token_mean": round(statistics.fmean(overhead) * 1e6, 1) if overhead else None,
            "constrained_tokens": len(overhead),
            "rows": rows,
        }

    print("baseline: unconstrained", flush=True)
    measure("baseline: unconstrained", None)
    for cls in (XGrammar, LLGuidance, OutlinesCore):
        start = time.perf_counter()
        try:
            backend = cls(tokenizer, vocab_size)
        except Exception as exc:
            results[cls.name] = {"schemas": len(prompts), "valid": 0, "parses": 0,
                                 "errors": [f"setup: {type(exc).__name__}: {exc}"]}
            continue
        setup_s = time.perf_counter() - start
        print(f"{cls.name} (tokenizer setup {setup_s:.2f} s)", flush=True)
        measure(cls.name, backend)
        results[cls.name]["tokenizer_setup_s"] = round(setup_s, 3)
    # the forward pass of one decode step, for scale
    prompt = prompts[0][1]
    _, _ = decode(model, prompt, eos, 1)
    start = time.perf_counter()
    tokens, _ = decode(model, prompt, eos, 16)
    step_ms = (time.perf_counter() - start) / max(len(tokens), 1) * 1000
    return {
        "benchmark": "structured_output",
        "model": loaded.model_id,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "decode_step_ms": round(step_ms, 1),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    data = run(args)
    print()
    print(f"{'candidate':26s} {'valid':>7s} {'parses':>7s} {'compile p50 ms':>15s} {'compile max ms':>15s}"
          f" {'mask µs/token p50':>18s}")
    for label, r in data["results"].items():
        print(f"{label:26s} {r['valid']:>4d}/{r['schemas']:<2d} {r['parses']:>4d}/{r['schemas']:<2d}"
              f" {str(r.get('compile_ms_p50')):>15s} {str(r.get('compile_ms_max')):>15s}"
              f" {str(r.get('mask_us_per_token_p50')):>18s}")
    print(f"(one decode step of the model: {data['decode_step_ms']} ms)")
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

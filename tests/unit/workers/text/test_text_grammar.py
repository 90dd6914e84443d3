"""Grammar-constrained decoding in the continuous-batching engine, on the real SmolLM2."""

from __future__ import annotations

import json

import jsonschema
import pytest

from infra.models.loader import LoadedModel
from workers.text.engine import TextEngine
from infra.models.structured import SchemaError, check_schema
from workers.text.grammar import GrammarError, GrammarSpec, Grammars, json_schema_spec, tool_call_spec

from .test_text_engine import drain, greedy

pytestmark = pytest.mark.slow  # loads a real model

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0},
                   "role": {"enum": ["admin", "user"]}},
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
ANSWER = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
          "additionalProperties": False}
WEATHER = ("get_weather", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                           "required": ["city"], "additionalProperties": False})


def _prompt(smollm: LoadedModel, text: str) -> list[int]:
    return smollm.format_chat([{"role": "user", "content": text}])


def test_greedy_output_under_a_schema_parses_and_validates(smollm: LoadedModel) -> None:
    engine = TextEngine(smollm.model, smollm.tokenizer)
    engine.add_request("a", _prompt(smollm, "Describe a user named Ada."),
                       greedy(64, grammar=json_schema_spec(PERSON)))
    result = drain(engine)["a"]
    jsonschema.validate(json.loads(result.text), PERSON)
    # it ended as soon as the object closed (nothing but EOS could follow), not at max_tokens
    assert result.final.finish_reason.value == "stop" and result.text.rstrip().endswith("}")


def test_unconstrained_neighbour_gets_the_same_greedy_text_as_alone(smollm: LoadedModel) -> None:
    question = _prompt(smollm, "What is the capital of France?")
    alone = TextEngine(smollm.model, smollm.tokenizer)
    alone.add_request("free", question, greedy(24))
    expected = drain(alone)["free"]

    engine = TextEngine(smollm.model, smollm.tokenizer)
    engine.add_request("json", _prompt(smollm, "Describe a user named Ada."),
                       greedy(48, grammar=json_schema_spec(PERSON)))
    engine.add_request("free", question, greedy(24))
    engine.add_request("enum", _prompt(smollm, "Is the sky blue?"), greedy(16, grammar=json_schema_spec(ANSWER)))
    results = drain(engine)
    assert results["free"].tokens == expected.tokens
    jsonschema.validate(json.loads(results["json"].text), PERSON)
    jsonschema.validate(json.loads(results["enum"].text), ANSWER)


def test_required_tool_call_is_a_valid_call(smollm: LoadedModel) -> None:
    engine = TextEngine(smollm.model, smollm.tokenizer)
    spec = tool_call_spec([WEATHER], optional=False)
    engine.add_request("t", _prompt(smollm, "What is the weather in Oslo?"), greedy(48, grammar=spec))
    call = json.loads(drain(engine)["t"].text)
    assert call["name"] == "get_weather"
    jsonschema.validate(call["arguments"], WEATHER[1])


def test_optional_tool_call_allows_text_that_is_not_a_call(smollm: LoadedModel) -> None:
    grammars = Grammars(smollm.tokenizer, smollm.model.config.vocab_size, frozenset({smollm.tokenizer.eos_token_id}))
    matcher = grammars.matcher(grammars.compile(tool_call_spec([WEATHER], optional=True)))
    hello = smollm.tokenizer.encode("Hello there", add_special_tokens=False)
    for token in hello:
        assert not matcher.accept(token)  # free text goes on until EOS
    strict = grammars.matcher(grammars.compile(tool_call_spec([WEATHER], optional=False)))
    with pytest.raises(GrammarError):
        strict.accept(hello[0])


def _accepts(matcher, tokens: list[int]) -> bool:
    """Whether `matcher` takes every token (the last one may complete the grammar)."""
    try:
        for token in tokens:
            matcher.accept(token)
    except GrammarError:
        return False
    return True


@pytest.mark.parametrize("optional", [False, True])
def test_parallel_tool_calls_are_one_object_per_line_up_to_the_limit(smollm: LoadedModel, optional: bool) -> None:
    from workers.text.grammar import MAX_PARALLEL_CALLS

    grammars = Grammars(smollm.tokenizer, smollm.model.config.vocab_size, frozenset({smollm.tokenizer.eos_token_id}))
    call = '{"arguments": {"city": "Oslo"}, "name": "get_weather"}'  # the grammar's key order and separators

    def tokens(calls: int) -> list[int]:
        return smollm.tokenizer.encode("\n".join([call] * calls), add_special_tokens=False)

    parallel = tool_call_spec([WEATHER], optional=optional, calls=MAX_PARALLEL_CALLS)
    for calls in (1, 2, MAX_PARALLEL_CALLS):
        assert _accepts(grammars.matcher(grammars.compile(parallel)), tokens(calls))
    assert not _accepts(grammars.matcher(grammars.compile(parallel)), tokens(MAX_PARALLEL_CALLS + 1))
    single = tool_call_spec([WEATHER], optional=optional)
    assert _accepts(grammars.matcher(grammars.compile(single)), tokens(1))
    assert not _accepts(grammars.matcher(grammars.compile(single)), tokens(2))
    # after the last allowed call nothing but EOS may follow: the sequence finishes there
    last = grammars.matcher(grammars.compile(parallel))
    assert [last.accept(t) for t in tokens(MAX_PARALLEL_CALLS)][-1] is True


def test_compiled_grammars_are_cached_by_schema(smollm: LoadedModel) -> None:
    grammars = Grammars(smollm.tokenizer, smollm.model.config.vocab_size, frozenset({2}), cache_size=1)
    first = grammars.submit(json_schema_spec(PERSON)).result()
    assert grammars.submit(json_schema_spec(dict(reversed(list(PERSON.items()))))).result() is first
    grammars.compile(GrammarSpec("json_object"))  # evicts the person schema (cache of one)
    assert grammars.submit(json_schema_spec(PERSON)).result() is not first


def test_a_schema_that_cannot_compile_fails_its_request_only(smollm: LoadedModel) -> None:
    bad = GrammarSpec("json_schema", '{"type": "object", "properties": {"a": {"type": "no-such-type"}}}')
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        check_schema(json.loads(bad.schema))
    engine = TextEngine(smollm.model, smollm.tokenizer)
    engine.add_request("bad", _prompt(smollm, "Hi"), greedy(8, grammar=bad))
    engine.add_request("ok", _prompt(smollm, "Hi"), greedy(4))
    results = drain(engine)
    assert results["bad"].final.error and "GrammarError" in results["bad"].final.error
    assert results["ok"].final.error is None and len(results["ok"].tokens) == 4

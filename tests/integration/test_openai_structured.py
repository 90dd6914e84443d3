"""Structured output and tool calls through the whole text path, with the official OpenAI SDK: the
answer to a json_schema request validates, a required tool call comes back as tool_calls (whole and
streamed), tool results are accepted as input, and bad schemas or tools are 400s naming the parameter."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest


pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer", "minimum": 0},
                   "role": {"enum": ["admin", "user"]}},
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}},
                                       "required": ["zone"], "additionalProperties": False}}}


async def test_json_schema_answer_validates(sdk, text_pipeline):
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Describe a user named Ada."}], max_tokens=80,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                                                 "strict": True}})
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), PERSON)


async def test_required_tool_call_returns_tool_calls_with_valid_arguments(sdk, text_pipeline):
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Oslo?"}], max_tokens=80,
        temperature=0, tools=[WEATHER, TIME], tool_choice="required")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    jsonschema.validate(json.loads(call.function.arguments), tools[call.function.name])


async def test_parallel_tool_calls_are_each_valid_and_stream_the_same(sdk, text_pipeline):
    """parallel_tool_calls true: one to four calls, each valid for its tool, with ids of their own; the
    streamed answer has the same calls at the same indexes."""
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "What is the weather in Oslo, and what time is"
                                                                   " it in Tokyo?"}],
               max_tokens=160, temperature=0, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=True)
    answer = await sdk.chat.completions.create(**ask)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert 1 <= len(calls) <= 4 and len({c.id for c in calls}) == len(calls)
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), tools[call.function.name])
    streamed: dict[int, tuple[str, str]] = {}
    async for chunk in await sdk.chat.completions.create(**ask, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            streamed[delta.index] = (delta.function.name, delta.function.arguments)
    assert streamed == {i: (c.function.name, c.function.arguments) for i, c in enumerate(calls)}


async def test_named_tool_call_streams_as_tool_call_deltas(sdk, text_pipeline):
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What time is it in Tokyo?"}], max_tokens=60,
        temperature=0, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True)
    chunks = [c async for c in stream]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and all(tc.index == 0 for tc in deltas)
    name = "".join(tc.function.name or "" for tc in deltas)
    arguments = "".join(tc.function.arguments or "" for tc in deltas)
    assert name == "get_time"
    jsonschema.validate(json.loads(arguments), TIME["function"]["parameters"])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""  # the call is not content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


async def test_tool_results_are_accepted_as_input(sdk, text_pipeline):
    answer = await sdk.chat.completions.create(
        model=MODEL, max_tokens=24, temperature=0, tools=[WEATHER], tool_choice="none", messages=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "clear"}'}])
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.content.strip()
    assert not choice.message.tool_calls


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "bad", "schema": {"type": "object", "properties": {"a": {"type": "no-such-type"}}}}}},
     "response_format.json_schema.schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "launch_rocket"}}},
     "tool_choice"),
])
async def test_bad_schemas_and_tools_are_400s_naming_the_parameter(sdk, text_pipeline, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                          **kwargs)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param

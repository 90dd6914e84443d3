"""response_format, tools and tool_choice: from an OpenAI body to the job's parameters, and the 400s."""

from __future__ import annotations

import pytest

from gateway.errors import ApiError
from gateway.openai.translate import constraints, parse_chat_body
from infra.models.tool_prompt import chat_messages
from schemas.requests import TextParams

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _body(**extra):
    return parse_chat_body({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **extra})


def test_json_schema_and_named_tool_become_job_parameters() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    params = constraints(_body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert params["response_format"] == {"type": "json_schema", "name": "x", "json_schema": schema, "strict": True}
    params = constraints(_body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert params["tool_choice"] == "function" and params["tool_name"] == "get_weather"
    job = TextParams(messages=[{"role": "user", "content": "Hi"}], **params)
    assert job.calls_tools and job.tools[0].parameters == TOOL["function"]["parameters"]
    assert constraints(_body(response_format={"type": "text"})) == {}


@pytest.mark.parametrize(("extra", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": 3}}}]},
     "tools[0].function.parameters"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "response_format"),
])
def test_bad_constraints_are_400s_naming_the_parameter(extra, param) -> None:
    with pytest.raises(ApiError) as caught:
        _body(**extra)
    assert caught.value.param == param


def test_tools_and_tool_turns_are_rendered_as_plain_turns() -> None:
    params = TextParams(
        messages=[{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "21 C"}],
        tools=[{"name": "get_weather", "parameters": TOOL["function"]["parameters"]}], tool_choice="required")
    messages = chat_messages(params)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "get_weather" in messages[0]["content"] and "must call one" in messages[0]["content"]
    assert messages[2]["content"] == '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    assert messages[3]["content"] == "Result of tool call c1:\n21 C"

"""Telling tool calls from text in a chat job's output, and parsing one or several calls."""

from __future__ import annotations

import json

import pytest

from schemas.requests import TextParams
from workers.errors import JobError
from workers.text.handler import ToolCallOutput

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _output(**fields) -> ToolCallOutput:
    return ToolCallOutput(TextParams(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], **fields))


def test_parallel_calls_parse_in_order_with_distinct_stable_ids() -> None:
    text = '{"name":"get_weather","arguments":{"city":"Oslo"}}\n{"name":"get_weather","arguments":{"city":"Rome"}}'
    calls = _output(tool_choice="required", parallel_tool_calls=True).parse(text, "job-1")
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Oslo", "Rome"]
    assert len({c.id for c in calls}) == 2
    assert [c.id for c in _output(tool_choice="required").parse(text, "job-1")] == [c.id for c in calls]
    one = _output(tool_choice="auto").parse('{"name":"get_weather","arguments":{"city":"Oslo"}}', "job-1")
    assert len(one) == 1 and one[0].name == "get_weather"
    assert one[0].id not in {c.id for c in calls}  # ids hash the job and its whole output
    assert _output(tool_choice="required").parse(text, "job-2")[0].id != calls[0].id


def test_text_is_not_a_call_and_a_broken_call_is_an_error() -> None:
    assert _output(tool_choice="auto").parse("It is sunny.", "job-1") is None
    with pytest.raises(JobError):
        _output(tool_choice="required").parse('{"name":"get_weather","arguments":{}} trailing', "job-1")

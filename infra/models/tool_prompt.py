"""A chat job's messages as the plain turns a chat template renders: tools described in the system
message, earlier tool calls and tool results written as text.

genloom renders tools itself rather than through a template's own tool syntax, so every chat model
(SmolLM2's template has none) sees the same instructions, and the grammar (workers/text/grammar.py)
makes the model answer in the form they describe: one JSON object ``{"name": ..., "arguments": {...}}``.
The gateway's length check and the text worker both build prompts here, so they count the same tokens.
"""

from __future__ import annotations

import json

from schemas.enums import ResponseFormatType, Role, ToolChoice
from schemas.requests import TextParams


def chat_messages(params: TextParams) -> list[dict[str, str]]:
    """`params.messages` as role/content turns, with the tool and response-format instructions."""
    messages: list[dict[str, str]] = []
    for m in params.messages:
        role, content = ("system" if m.role is Role.SYSTEM else m.role.value), m.content
        if m.role is Role.TOOL:
            role, content = "user", f"Result of tool call {m.tool_call_id}:\n{m.content}"
        elif m.tool_calls:
            calls = "\n".join(json.dumps({"name": c.name, "arguments": _arguments(c.arguments)}) for c in m.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        messages.append({"role": role, "content": content})
    instructions = _instructions(params)
    if instructions:
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{instructions}"}
        else:
            messages.insert(0, {"role": "system", "content": instructions})
    return messages


def _arguments(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _instructions(params: TextParams) -> str:
    parts: list[str] = []
    if params.tools:
        described = [{"name": t.name, **({"description": t.description} if t.description else {}),
                      "parameters": t.parameters} for t in params.tools]
        parts.append("You can call these functions:\n" + json.dumps(described))
        call = 'To call one, answer with only a JSON object: {"name": <function name>, "arguments": <its arguments>}.'
        if params.parallel_tool_calls and params.tool_choice is not ToolChoice.FUNCTION:
            call += " To call several at once, write one such object per line."
        match params.tool_choice:
            case ToolChoice.NONE:
                parts.append("Do not call any of them now: answer in plain text.")
            case ToolChoice.REQUIRED:
                parts.append(f"You must call one of them. {call}")
            case ToolChoice.FUNCTION:
                parts.append(f"You must call {params.tool_name}. {call}")
            case _:
                parts.append(f"Call one only if it is needed to answer; otherwise answer in plain text. {call}")
    fmt = params.response_format
    if fmt is not None:
        if fmt.type is ResponseFormatType.JSON_SCHEMA:
            parts.append("Answer with only a JSON object that follows this JSON Schema: " + json.dumps(fmt.json_schema))
        else:
            parts.append("Answer with only a JSON object.")
    return "\n".join(parts)

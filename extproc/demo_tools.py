"""Tool calls from the demo model: when a request offers tools (and does not already end with a tool's result),
the demo answers with a call to the first tool, in the API's own format, streamed like a real model streams it.

Arguments are made from the tool's JSON schema: each required property (else the first) gets the user's text
when it is a string, so a prompt with a secret produces a tool call carrying it (what tool-call redaction is for).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.demo_wire import Reply, split_pieces, sse

_SAMPLE = {"number": 1, "integer": 1, "boolean": True}


@dataclass(frozen=True, slots=True)
class DemoCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


def requested_call(body: dict[str, Any], api: str, user_text: str) -> DemoCall | None:
    """The call the demo makes for this request, or None for a text answer."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or body.get("tool_choice") == "none" or _answers_a_call(body, api):
        return None
    name, schema = _tool(tools[0], api)
    if not name:
        return None
    ident = hashlib.sha256(f"{name}\n{user_text}".encode()).hexdigest()[:24]
    return DemoCall(f"call_{ident}", name, _arguments(schema, user_text))


def _tool(tool: Any, api: str) -> tuple[str | None, dict[str, Any]]:
    """(name, parameters schema) of a tool definition in the API's format."""
    if not isinstance(tool, dict):
        return None, {}
    inner: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) else tool  # chat APIs nest it
    schema = inner.get("input_schema" if api == "anthropic" else "parameters")
    name = inner.get("name")
    return (name if isinstance(name, str) else None), (schema if isinstance(schema, dict) else {})


def _arguments(schema: dict[str, Any], user_text: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    listed = schema["required"] if isinstance(schema.get("required"), list) else []
    required = [p for p in listed if p in properties] or list(properties)[:1]
    out: dict[str, Any] = {}
    for name in required:
        kind = properties[name].get("type") if isinstance(properties[name], dict) else None
        out[name] = user_text if kind in (None, "string") else _SAMPLE.get(kind, user_text)
    return out


def _answers_a_call(body: dict[str, Any], api: str) -> bool:
    """True when the conversation ends with a tool's result: the model then answers in text."""
    items = body.get("input" if api == "responses" else "messages")
    last: dict[str, Any] = items[-1] if isinstance(items, list) and items and isinstance(items[-1], dict) else {}
    if api == "responses":
        return last.get("type") == "function_call_output"
    if api == "anthropic":
        blocks: list[Any] = last["content"] if isinstance(last.get("content"), list) else []
        return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
    return last.get("role") == "tool"


# ---- OpenAI chat ---------------------------------------------------------------------------------------------
def openai_message(call: DemoCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments_json}
    return {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function",
                                                                   "function": function}]}


def openai_frames(call: DemoCall, base: dict[str, Any]) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    head = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
    yield chunk({"role": "assistant", "content": None, "tool_calls": [head]})
    for piece in split_pieces(call.arguments_json):
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls")
    yield b"data: [DONE]\n\n"


# ---- Ollama ----------------------------------------------------------------------------------------------------
def ollama_message(call: DemoCall) -> dict[str, Any]:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": call.name, "arguments": call.arguments}}]}


# ---- Anthropic ---------------------------------------------------------------------------------------------------
def anthropic_block(call: DemoCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_" + call.id[5:], "name": call.name, "input": call.arguments}


def anthropic_frames(call: DemoCall, r: Reply, message: dict[str, Any]) -> Iterator[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, kind)

    usage = {**message["usage"], "output_tokens": 0}
    yield event("message_start", message={**message, "content": [], "stop_reason": None, "usage": usage})
    yield event("content_block_start", index=0, content_block={**anthropic_block(call), "input": {}})
    for piece in split_pieces(call.arguments_json):
        yield event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": piece})
    yield event("content_block_stop", index=0)
    stop = {"stop_reason": "tool_use", "stop_sequence": None}
    yield event("message_delta", delta=stop, usage={"output_tokens": r.completion_tokens})
    yield event("message_stop")

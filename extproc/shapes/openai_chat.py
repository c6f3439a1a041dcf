"""OpenAI Chat Completions (`/v1/chat/completions`), as served by OpenAI, vLLM, llama.cpp, LiteLLM and
Ollama's OpenAI-compatible endpoint. Streams are SSE `data: {chunk}` records ending with `data: [DONE]`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta, ToolCall, ToolChoice, ToolFragment
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request, named_tool, tool_call


def message_segments(messages: Any, field: str = "messages") -> list[Segment]:
    """Segments of an OpenAI-style message list: string or content-part content, tool-call arguments."""
    if not isinstance(messages, list):
        raise MalformedRequest(f"`{field}` must be an array of messages")
    segments: list[Segment] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise MalformedRequest(f"`{field}[{i}]` must be an object")
        role = message.get("role")
        role = role if isinstance(role, str) else "user"
        segments.extend(_content_segments(message.get("content"), role, (field, i, "content")))
        segments.extend(_tool_call_segments(message.get("tool_calls"), role, (field, i, "tool_calls")))
    return segments


def _content_segments(content: Any, role: str, where: tuple[Any, ...], strict: bool = True) -> list[Segment]:
    if isinstance(content, str):
        return [Segment(content, role, where)]
    if isinstance(content, list):
        return [
            Segment(part["text"], role, (*where, j, "text"))
            for j, part in enumerate(content)
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    if content is not None and strict:
        raise MalformedRequest(f"`{'.'.join(map(str, where))}` must be a string or an array of parts")
    return []


def _tool_call_segments(calls: Any, role: str, where: tuple[Any, ...]) -> list[Segment]:
    if not isinstance(calls, list):
        return []
    return [
        Segment(call["function"]["arguments"], role, (*where, j, "function", "arguments"))
        for j, call in enumerate(calls)
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
        and isinstance(call["function"].get("arguments"), str)
    ]


def _choices(payload: Any) -> list[dict[str, Any]]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _index(choice: dict[str, Any], position: int) -> int:
    index = choice.get("index", position)
    return index if isinstance(index, int) else position


def openai_usage(payload: Any) -> dict[str, int] | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    out = {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}
    return {k: v for k, v in out.items() if isinstance(v, int)} or None


def ask_openai_stream_usage(doc: Any) -> bool:
    """Add `stream_options.include_usage` to a streaming request that did not ask for it."""
    if not isinstance(doc, dict) or doc.get("stream") is not True:
        return False
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def openai_error(status: int, code: str, message: str) -> bytes:
    error_type = {400: "invalid_request_error", 403: "policy_violation", 413: "invalid_request_error", 415: "invalid_request_error",
                  429: "rate_limit_error"}.get(status, "server_error")
    return orjson.dumps({"error": {"message": message, "type": error_type, "code": code}})


class OpenAIFamily(Shape):
    """What every OpenAI-style API shares: usage reporting, `stream_options.include_usage`, error format,
    `{"type": "function", "function": {"name": ...}}` tools."""

    tool_option_fields = ("tool_choice", "parallel_tool_calls")

    def tool_name(self, tool: dict[str, Any]) -> str | None:
        return named_tool(tool)

    def usage_of(self, payload: Any) -> dict[str, int] | None:
        return openai_usage(payload)

    def ask_stream_usage(self, doc: Any) -> bool:
        return ask_openai_stream_usage(doc)

    def is_usage_only(self, payload: Any) -> bool:
        return isinstance(payload, dict) and payload.get("choices") == [] and "usage" in payload

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        return b"data: " + openai_error(403, code, message) + b"\n\n"

    default_deny_notice = "both"  # the SDKs raise on the error event; chat UIs show the text

    def stream_notice(self, text: str, final: bool) -> bytes:
        event = b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}) + b"\n\n"
        return event + (b"data: [DONE]\n\n" if final else b"")


def finished_choices(payload: Any) -> set[int]:
    """Indexes of the choices this streamed event finishes."""
    return {_index(c, i) for i, c in enumerate(_choices(payload)) if c.get("finish_reason")}


@register
class OpenAIChat(OpenAIFamily):
    name = "openai_chat"
    output_limit_fields = (("max_completion_tokens",), ("max_tokens",))
    paths = ("/v1/chat/completions", "/chat/completions", "/openai/v1/chat/completions")
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        if not isinstance(doc, dict):
            raise MalformedRequest("request body must be a JSON object")
        return build_request(doc, message_segments(doc.get("messages")))

    def response_segments(self, doc: Any) -> list[Segment]:
        choices = doc.get("choices") if isinstance(doc, dict) else None
        segments: list[Segment] = []
        for i, choice in enumerate(choices if isinstance(choices, list) else ()):
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                segments.extend(_content_segments(message.get("content"), "assistant",
                                                    ("choices", i, "message", "content"), strict=False))
                segments.extend(_tool_call_segments(message.get("tool_calls"), "assistant",
                                                    ("choices", i, "message", "tool_calls")))
        return segments

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        deltas: list[TextDelta] = []
        choices = payload.get("choices") if isinstance(payload, dict) else None
        for i, choice in enumerate(choices if isinstance(choices, list) else ()):
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            index = choice.get("index", i)
            index = index if isinstance(index, int) else i
            for field in ("content", "reasoning_content", "refusal"):
                text = delta.get(field)
                if isinstance(text, str) and text:
                    deltas.append(TextDelta((index, field), text, ("choices", i, "delta", field)))
            deltas.extend(_tool_call_deltas(delta.get("tool_calls"), index, i))
        return deltas

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        finished = finished_choices(payload)
        return [k for k in keys if isinstance(k, tuple) and k and k[0] in finished]

    def tool_choice(self, doc: Any) -> ToolChoice | None:
        return openai_tool_choice(doc.get("tool_choice"))

    def response_tool_calls(self, doc: Any) -> list[ToolCall]:
        calls = []
        for i, choice in enumerate(_choices(doc)):
            message = choice.get("message")
            for j, call in enumerate(_calls(message.get("tool_calls") if isinstance(message, dict) else None)):
                function = _function(call)
                calls.append(tool_call(function.get("name"), function.get("arguments"), (i, "tool", j)))
        return calls

    def tool_fragments(self, payload: Any) -> list[ToolFragment]:
        fragments = []
        for i, choice in enumerate(_choices(payload)):
            delta = choice.get("delta")
            for j, call in enumerate(_calls(delta.get("tool_calls") if isinstance(delta, dict) else None)):
                function = _function(call)
                call_index = call.get("index", j)
                key = (_index(choice, i), "tool", call_index if isinstance(call_index, int) else j)
                name, arguments = function.get("name"), function.get("arguments")
                fragments.append(ToolFragment(key, name if isinstance(name, str) else None,
                                              arguments if isinstance(arguments, str) else None))
        return fragments


def openai_tool_choice(choice: Any) -> ToolChoice | None:
    """OpenAI's tool_choice: "none" | "auto" | "required", a named tool, or `allowed_tools` with a mode."""
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        inner: dict[str, Any] = allowed if isinstance(allowed, dict) else choice
        return ToolChoice(str(inner.get("mode", "auto")))
    name = choice.get("name") if isinstance(choice, dict) and "name" in choice else named_tool(choice)
    return ToolChoice("tool", name if isinstance(name, str) else None)


def _function(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    return function if isinstance(function, dict) else {}


def _calls(calls: Any) -> list[dict[str, Any]]:
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _tool_call_deltas(calls: Any, index: int, position: int) -> list[TextDelta]:
    if not isinstance(calls, list):
        return []
    deltas = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments:
            call_index = call.get("index", j)
            key = (index, "tool", call_index if isinstance(call_index, int) else j)
            deltas.append(TextDelta(key, arguments, ("choices", position, "delta", "tool_calls", j, "function",
                                                     "arguments")))
    return deltas

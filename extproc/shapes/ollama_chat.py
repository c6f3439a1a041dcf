"""Ollama's native chat API (`/api/chat`).

Messages look like OpenAI's, but `content` is a plain string, `images` are base64 (ignored), assistant
messages may carry `thinking`, and `tool_calls[].function.arguments` is a JSON *object*: each string value
inside it is its own segment, located inside the object. Streaming is the default (`stream` absent => true):
NDJSON lines carrying `message.content` deltas, the last one `done: true` with `prompt_eval_count` and
`eval_count`; with `stream: false` the response is one such object. Errors are `{"error": "..."}`, in a
stream as one more line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta, ToolCall, ToolFragment
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request, named_tool, tool_call
from extproc.shapes.openai_chat import message_segments
from extproc.shapes.openai_completions import dotted, request_object, string_leaves, token_usage

_TEXT_FIELDS = ("content", "thinking")


def ollama_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def ollama_usage(payload: Any) -> dict[str, int] | None:
    """Token counts of the final (`done: true`) object of a stream or of a whole response."""
    if not isinstance(payload, dict) or payload.get("done") is not True:
        return None
    return token_usage(payload, ("prompt_eval_count",), "eval_count")


class OllamaFamily(Shape):
    """What Ollama's native APIs share: NDJSON streams ended by `done`, usage counts, `{"error": ...}`."""

    stream_framing = "ndjson"

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        return ollama_closed_keys(payload, keys)

    def usage_of(self, payload: Any) -> dict[str, int] | None:
        return ollama_usage(payload)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return ollama_error(message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        return ollama_error(message) + b"\n"

    default_deny_notice = "content"  # Open WebUI drops Ollama's closing {"error"} line

    def stream_notice(self, text: str, final: bool) -> bytes:
        return orjson.dumps({"message": {"role": "assistant", "content": text}, "done": True,
                             "done_reason": "stop"}) + b"\n"

    def tool_name(self, tool: dict[str, Any]) -> str | None:
        return named_tool(tool)

    def response_tool_calls(self, doc: Any) -> list[ToolCall]:
        """Ollama sends each tool call whole, its arguments an object, in a response or in one stream line."""
        message = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(message, dict):
            return []
        calls = message.get("tool_calls")
        found = []
        for j, call in enumerate(calls if isinstance(calls, list) else ()):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                found.append(tool_call(function.get("name"), function.get("arguments"),
                                       ("tool", _call_index(message, j))))
        return found

    def tool_fragments(self, payload: Any) -> list[ToolFragment]:
        return [ToolFragment(c.key, c.name, c.arguments, whole=True) for c in self.response_tool_calls(payload)]


@register
class OllamaChat(OllamaFamily):
    name = "ollama_chat"
    output_limit_fields = (("options", "num_predict"),)
    paths = ("/api/chat",)

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        messages = doc.get("messages")
        segments = [] if messages is None else _request_segments(messages)
        return build_request(doc, segments, stream_default=True)

    def response_segments(self, doc: Any) -> list[Segment]:
        message = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(message, dict):
            return []
        texts = [Segment(message[f], "assistant", ("message", f)) for f in _TEXT_FIELDS
                 if isinstance(message.get(f), str)]
        return texts + _argument_segments(message, "assistant", ("message",))

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        message = payload.get("message") if isinstance(payload, dict) else None
        if not isinstance(message, dict):
            return []
        deltas = [TextDelta(f, message[f], ("message", f)) for f in _TEXT_FIELDS
                  if isinstance(message.get(f), str) and message[f]]
        for s in _argument_segments(message, "assistant", ("message",)):
            if s.text:
                call, path = s.locator[2], s.locator[5:]
                deltas.append(TextDelta(("tool", _call_index(message, call), *path), s.text, s.locator))
        return deltas



def ollama_closed_keys(payload: Any, keys: Iterable[Any]) -> list[Any]:
    """`done: true` ends every key; answer text after thinking ends the thinking."""
    if not isinstance(payload, dict):
        return []
    if payload.get("done") is True:
        return list(keys)
    message = payload.get("message")
    body: dict[str, Any] = message if isinstance(message, dict) else payload
    answering = bool(body.get("content") or body.get("response")) and not body.get("thinking")
    return [k for k in keys if k == "thinking"] if answering else []


def _request_segments(messages: Any) -> list[Segment]:
    segments = message_segments(messages)  # content strings; checks the list and its items
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message.get("role"), str) else "user"
        thinking = message.get("thinking")
        if thinking is not None and not isinstance(thinking, str):
            raise MalformedRequest(f"`messages[{i}].thinking` must be a string")
        if thinking is not None:
            segments.append(Segment(thinking, role, ("messages", i, "thinking")))
        segments.extend(_argument_segments(message, role, ("messages", i), strict=True))
    segments.sort(key=lambda s: s.locator[1])  # stable: document order, message by message
    return segments


def _argument_segments(message: dict[str, Any], role: str, where: tuple[Any, ...],
                       strict: bool = False) -> list[Segment]:
    """One segment per string value inside each tool call's `function.arguments` object."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        if strict and calls is not None:
            raise MalformedRequest(f"`{dotted(where)}.tool_calls` must be an array")
        return []
    segments: list[Segment] = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, dict):
            where_args = (*where, "tool_calls", j, "function", "arguments")
            segments.extend(Segment(text, role, path) for path, text in string_leaves(arguments, where_args))
        elif strict and arguments is not None and not isinstance(arguments, str):
            raise MalformedRequest(f"`{dotted(where)}.tool_calls[{j}].function.arguments` must be an object")
    return segments


def _call_index(message: dict[str, Any], position: int) -> Any:
    function = message["tool_calls"][position]["function"]
    index = function.get("index")
    return index if isinstance(index, int) else position

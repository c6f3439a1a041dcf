"""Anthropic Messages (`/v1/messages`), as served by Anthropic, LiteLLM and Ollama's Anthropic-compatible API.

Requests: `system` (a string or text blocks) and `messages` whose content is a string or blocks — `text`,
`tool_use` (the assistant's call; each string inside `input` is a segment), `tool_result` (role "tool":
untrusted input), `document` with a plain-text source. `thinking` blocks are signed by the API and may not be
edited, so they are not segments of a request. Streams are SSE with `event:` lines: `content_block_delta`
carries `text_delta` (key: block index), `input_json_delta` (key: ("tool", index)) and `thinking_delta`.
Errors are `{"type": "error", "error": {"type": ..., "message": ...}}`; in a stream, an `event: error`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta, ToolCall, ToolChoice, ToolFragment
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request, tool_call
from extproc.shapes.openai_completions import (
    dotted,
    int_field,
    request_object,
    sse_error_event,
    string_leaves,
    token_usage,
)

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error", 429: "rate_limit_error",
                 529: "overloaded_error"}
# content_block_delta type -> (text field, key tag); text deltas are keyed by the block index alone
_DELTA_FIELDS = {"text_delta": ("text", None), "input_json_delta": ("partial_json", "tool"),
                 "thinking_delta": ("thinking", "thinking")}
_INPUT_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
# a stream error has no status, only our code
# A stream cut by the hold limit or by the response size limit is the gateway's failure on the answer, not a
# request that was too large: `api_error`, which the SDK reports as a server error.
_CODE_TYPES = {"invalid_request": "invalid_request_error", "payload_too_large": "request_too_large",
               "stream_hold_limit": "api_error", "response_too_large": "api_error",
               "budget_exceeded": "rate_limit_error", "policy_error": "api_error"}


def anthropic_error(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


@register
class AnthropicMessages(Shape):
    name = "anthropic_messages"
    output_limit_fields = (("max_tokens",),)
    paths = ("/v1/messages", "/anthropic/v1/messages")
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        segments = _system_segments(doc.get("system"))
        messages = doc.get("messages")
        if not isinstance(messages, list):
            raise MalformedRequest("`messages` must be an array of messages")
        for i, message in enumerate(messages):
            segments.extend(_message_segments(message, ("messages", i)))
        return build_request(doc, segments)

    def response_segments(self, doc: Any) -> list[Segment]:
        content = doc.get("content") if isinstance(doc, dict) else None
        if not isinstance(content, list):
            return []
        return [s for i, block in enumerate(content) for s in _output_block_segments(block, ("content", i))]

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        kind = payload.get("type") if isinstance(payload, dict) else None
        index = int_field(payload, "index") if isinstance(payload, dict) else None
        if kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            return _block_delta(payload["delta"], index)
        if kind == "content_block_start":
            block = _output_block_segments(payload.get("content_block"), ("content_block",))
            return [TextDelta(_start_key(s.locator, index), s.text, s.locator) for s in block if s.text]
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            return [TextDelta(("message_start", *s.locator), s.text, ("message", *s.locator))
                    for s in self.response_segments(payload["message"]) if s.text]
        return []

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind in ("message_delta", "message_stop"):
            return list(keys)
        if kind != "content_block_stop":
            return []
        index = payload.get("index")
        return [k for k in keys if k == index or (isinstance(k, tuple) and len(k) > 1 and k[1] == index)]

    def usage_of(self, payload: Any) -> dict[str, int] | None:
        """Usage of a response, `message_start` (input) or `message_delta` (cumulative output). Cache reads
        and writes count as input: Anthropic's `input_tokens` leaves them out."""
        if isinstance(payload, dict) and payload.get("type") == "message_start":
            payload = payload.get("message")
        usage = payload.get("usage") if isinstance(payload, dict) else None
        return token_usage(usage, _INPUT_COUNTS, "output_tokens")

    def tool_choice(self, doc: Any) -> ToolChoice | None:
        """`{"type": "auto" | "any" | "tool" | "none", "name": ...}`; "any" is OpenAI's "required"."""
        choice = doc.get("tool_choice")
        if not isinstance(choice, dict):
            return None if choice is None else ToolChoice(str(choice))
        mode = "required" if choice.get("type") == "any" else choice.get("type")
        name = choice.get("name")
        return ToolChoice(str(mode), name if isinstance(name, str) else None)

    def response_tool_calls(self, doc: Any) -> list[ToolCall]:
        content = doc.get("content") if isinstance(doc, dict) else None
        return [tool_call(block.get("name"), block.get("input"), ("tool", i))
                for i, block in enumerate(content if isinstance(content, list) else ())
                if isinstance(block, dict) and block.get("type") == "tool_use"]

    def tool_fragments(self, payload: Any) -> list[ToolFragment]:
        """A tool_use block's start names the tool; its input arrives as `input_json_delta` pieces."""
        kind = payload.get("type") if isinstance(payload, dict) else None
        index = int_field(payload, "index") if isinstance(payload, dict) else None
        if kind == "content_block_start" and isinstance(payload.get("content_block"), dict):
            block = payload["content_block"]
            if block.get("type") != "tool_use":
                return []
            start = orjson.dumps(block["input"]).decode() if isinstance(block.get("input"), dict) \
                and block["input"] else None
            name = block.get("name")
            return [ToolFragment(("tool", index), name if isinstance(name, str) else "", start)]
        delta = payload.get("delta") if kind == "content_block_delta" else None
        if isinstance(delta, dict) and delta.get("type") == "input_json_delta":
            text = delta.get("partial_json")
            return [ToolFragment(("tool", index), None, text if isinstance(text, str) else None)]
        return []

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return anthropic_error(_STATUS_TYPES.get(status, "api_error"), message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        body = anthropic_error(_CODE_TYPES.get(code, "permission_error"), message)
        return sse_error_event(body, event="error")


# ---- requests ---------------------------------------------------------------------------------------------
def _system_segments(system: Any) -> list[Segment]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Segment(system, "system", ("system",))]
    if not isinstance(system, list):
        raise MalformedRequest("`system` must be a string or an array of text blocks")
    segments = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or not isinstance(block.get("text"), str):
            raise MalformedRequest(f"`system[{i}]` must be a text block with a string `text`")
        segments.append(Segment(block["text"], "system", ("system", i, "text")))
    return segments


def _message_segments(message: Any, where: tuple[Any, ...]) -> list[Segment]:
    if not isinstance(message, dict):
        raise MalformedRequest(f"`{dotted(where)}` must be an object")
    role = message.get("role")
    return _content_segments(message.get("content"), role if isinstance(role, str) else "user", (*where, "content"))


def _content_segments(content: Any, role: str, where: tuple[Any, ...]) -> list[Segment]:
    if isinstance(content, str):
        return [Segment(content, role, where)]
    if not isinstance(content, list):
        raise MalformedRequest(f"`{dotted(where)}` must be a string or an array of content blocks")
    segments: list[Segment] = []
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise MalformedRequest(f"`{dotted((*where, j))}` must be an object")
        segments.extend(_block_segments(block, role, (*where, j)))
    return segments


def _block_segments(block: dict[str, Any], role: str, where: tuple[Any, ...]) -> list[Segment]:
    kind = block.get("type")
    if kind == "text":
        return [Segment(_string(block, "text", where), role, (*where, "text"))]
    if kind == "tool_use":
        tool_input = block.get("input")
        if tool_input is not None and not isinstance(tool_input, dict):
            raise MalformedRequest(f"`{dotted((*where, 'input'))}` must be an object")
        return [Segment(text, role, path) for path, text in string_leaves(tool_input, (*where, "input"))]
    if kind == "tool_result":
        content = block.get("content")
        return [] if content is None else _content_segments(content, "tool", (*where, "content"))
    source = block.get("source")
    if kind == "document" and isinstance(source, dict) and source.get("type") == "text":
        return [Segment(_string(source, "data", (*where, "source")), role, (*where, "source", "data"))]
    return []  # images, signed thinking, server-tool results, ...


def _string(block: dict[str, Any], field: str, where: tuple[Any, ...]) -> str:
    value = block.get(field)
    if not isinstance(value, str):
        raise MalformedRequest(f"`{dotted((*where, field))}` must be a string")
    return value


# ---- responses and streams --------------------------------------------------------------------------------
def _output_block_segments(block: Any, where: tuple[Any, ...]) -> list[Segment]:
    """Assistant text of a response content block: text, thinking, strings inside a tool call's input."""
    if not isinstance(block, dict):
        return []
    if block.get("type") == "tool_use":
        leaves = string_leaves(block.get("input"), (*where, "input"))
        return [Segment(text, "assistant", path) for path, text in leaves]
    return [Segment(block[f], "assistant", (*where, f)) for f in ("text", "thinking")
            if isinstance(block.get(f), str)]


def _block_delta(delta: dict[str, Any], index: Any) -> list[TextDelta]:
    kind = delta.get("type")
    field, tag = _DELTA_FIELDS.get(kind, (None, None)) if isinstance(kind, str) else (None, None)
    key: Any = index if tag is None else (tag, index)
    text = delta.get(field) if field else None
    return [TextDelta(key, text, ("delta", field))] if isinstance(text, str) and text else []


def _start_key(locator: tuple[Any, ...], index: Any) -> Any:
    """Text in a start event continues the block's deltas; a tool call's start input gets its own key."""
    if locator[1] == "text":
        return index
    if locator[1] == "thinking":
        return ("thinking", index)
    return ("tool_start", index, *locator[2:])

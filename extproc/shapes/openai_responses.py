"""OpenAI Responses (`/v1/responses`), as served by OpenAI, vLLM and Ollama's OpenAI-compatible endpoint.

Requests carry `instructions` (system) and `input`: a string or a list of items — messages (content string or
`input_text`/`output_text`/`refusal` parts), the assistant's earlier `function_call`s and the tools' outputs
(`function_call_output`, role "tool": untrusted input). Responses carry `output[]` items. Streams are SSE with
`event:` lines; text arrives in `*.delta` events keyed by output/content index.

The `*.done`, `*.added` and `response.*` lifecycle events repeat the full text of what was streamed. Each such
text is reported as its own single-record delta (key starting with "final"), so it is scanned and redacted
like the deltas instead of leaking the text the deltas had redacted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta, ToolCall, ToolChoice, ToolFragment
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request, optional_string, tool_call
from extproc.shapes.openai_chat import openai_error, openai_tool_choice
from extproc.shapes.openai_completions import dotted, int_field, request_object, sse_error_event, token_usage

_PART_TEXT = ("text", "refusal")  # the text field of input_text / output_text / summary_text / refusal parts
_CALLS = {"function_call": "arguments", "custom_tool_call": "input"}  # assistant tool calls: text field
_OUTPUTS = ("function_call_output", "custom_tool_call_output")  # tool results: `output`, untrusted

# streamed delta event -> key tag ("text" deltas are keyed by (output_index, content_index) alone)
_DELTA_EVENTS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "refusal",
    "response.function_call_arguments.delta": "tool",
    "response.custom_tool_call_input.delta": "tool",
    "response.reasoning_text.delta": "reasoning",
    "response.reasoning_summary_text.delta": "reasoning_summary",
}
# lifecycle events repeating full text -> the field holding it
_FINAL_TEXT = {
    "response.output_text.done": "text",
    "response.refusal.done": "refusal",
    "response.function_call_arguments.done": "arguments",
    "response.custom_tool_call_input.done": "input",
    "response.reasoning_text.done": "text",
    "response.reasoning_summary_text.done": "text",
}


@register
class OpenAIResponses(Shape):
    name = "openai_responses"
    messages_field = "input"
    output_limit_fields = (("max_output_tokens",),)
    paths = ("/v1/responses", "/responses", "/openai/v1/responses")
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        segments = []
        instructions = optional_string(doc, "instructions")
        if instructions is not None:
            segments.append(Segment(instructions, "system", ("instructions",)))
        segments.extend(_input_segments(doc.get("input")))
        return build_request(doc, segments)

    def response_segments(self, doc: Any) -> list[Segment]:
        output = doc.get("output") if isinstance(doc, dict) else None
        if not isinstance(output, list):
            return []
        segments: list[Segment] = []
        for i, item in enumerate(output):
            segments.extend(_output_item_segments(item, ("output", i)))
        return segments

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type")
        if isinstance(kind, str) and kind in _DELTA_EVENTS:
            text = payload.get("delta")
            return [TextDelta(_delta_key(payload, _DELTA_EVENTS[kind]), text, ("delta",))] \
                if isinstance(text, str) and text else []
        return [TextDelta(_final_key(payload, s.locator), s.text, s.locator)
                for s in self._final_texts(payload) if s.text]

    def _final_texts(self, payload: dict[str, Any]) -> list[Segment]:
        kind = payload["type"] if isinstance(payload.get("type"), str) else ""
        if kind in _FINAL_TEXT and isinstance(payload.get(_FINAL_TEXT[kind]), str):
            return [Segment(payload[_FINAL_TEXT[kind]], "assistant", (_FINAL_TEXT[kind],))]
        if isinstance(payload.get("part"), dict):  # content_part / reasoning_summary_part added|done
            return _assistant_part(payload["part"], ("part",))
        if isinstance(payload.get("item"), dict):  # output_item added|done
            return _output_item_segments(payload["item"], ("item",))
        if kind.startswith("response.") and isinstance(payload.get("response"), dict):
            return [Segment(s.text, s.role, ("response", *s.locator))
                    for s in self.response_segments(payload["response"])]
        return []

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, str):
            return []
        if kind in ("response.completed", "response.failed", "response.incomplete"):
            return list(keys)
        finals = [k for k in keys if isinstance(k, tuple) and k and k[0] == "final"]
        if not kind.endswith(".done"):
            return finals
        output = payload.get("output_index")
        return finals + [k for k in keys if isinstance(k, tuple) and len(k) >= 2 and k[0] != "final"
                         and (k[0] == output if not isinstance(k[0], str) else k[1] == output)]

    def usage_of(self, payload: Any) -> dict[str, int] | None:
        """Usage of a response, or of the response inside `response.completed` (incomplete, failed)."""
        if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
            payload = payload["response"]
        usage = payload.get("usage") if isinstance(payload, dict) else None
        return token_usage(usage, ("input_tokens",), "output_tokens")

    tool_option_fields = ("tool_choice", "parallel_tool_calls")

    def tool_choice(self, doc: Any) -> ToolChoice | None:
        choice = doc.get("tool_choice")
        if isinstance(choice, dict) and "name" not in choice and choice.get("type") not in (
                "function", "custom", "allowed_tools"):
            return ToolChoice("tool", str(choice.get("type")))  # a hosted tool, e.g. web_search_preview
        return openai_tool_choice(choice)

    def response_tool_calls(self, doc: Any) -> list[ToolCall]:
        output = doc.get("output") if isinstance(doc, dict) else None
        return [tool_call(item.get("name"), item.get(_call_field(item) or ""), ("tool", i))
                for i, item in enumerate(output if isinstance(output, list) else ()) if _call_field(item)]

    def tool_fragments(self, payload: Any) -> list[ToolFragment]:
        """`output_item.added` names the call, argument deltas follow; `output_item.done` and
        `response.completed` repeat whole calls (checked again only if they differ)."""
        kind = payload.get("type") if isinstance(payload, dict) else None
        key = ("tool", int_field(payload, "output_index", 0)) if isinstance(payload, dict) else None
        if kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            text = payload.get("delta")
            return [ToolFragment(key, None, text)] if isinstance(text, str) else []
        item = payload.get("item") if kind in ("response.output_item.added", "response.output_item.done") else None
        field = _call_field(item)
        if isinstance(item, dict) and field:
            name, arguments = item.get("name"), item.get(field)
            return [ToolFragment(key, name if isinstance(name, str) else "", arguments or None,
                                 whole=kind == "response.output_item.done")]
        if kind == "response.completed" and isinstance(payload.get("response"), dict):
            return [ToolFragment(c.key, c.name, c.arguments, whole=True)
                    for c in self.response_tool_calls(payload["response"])]
        return []

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        """The error event, then `response.failed`, which the SDK's stream helper surfaces as the reason."""
        failed = orjson.dumps({"type": "response.failed", "response": {
            "object": "response", "status": "failed", "error": {"code": code, "message": message}}})
        return sse_error_event(_stream_error(code, message), event="error") + \
            sse_error_event(failed, event="response.failed")


def _call_field(item: Any) -> str | None:
    """The field holding a tool call item's arguments, or None if `item` is not a tool call."""
    kind = item.get("type") if isinstance(item, dict) else None
    return _CALLS.get(kind) if isinstance(kind, str) else None


def _stream_error(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message, "param": None})


# ---- requests ---------------------------------------------------------------------------------------------
def _input_segments(value: Any) -> list[Segment]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Segment(value, "user", ("input",))]
    if not isinstance(value, list):
        raise MalformedRequest("`input` must be a string or an array of input items")
    segments: list[Segment] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise MalformedRequest(f"`input[{i}]` must be an object")
        segments.extend(_input_item_segments(item, ("input", i)))
    return segments


def _input_item_segments(item: dict[str, Any], where: tuple[Any, ...]) -> list[Segment]:
    kind = item.get("type", "message")
    if not isinstance(kind, str):
        raise MalformedRequest(f"`{dotted((*where, 'type'))}` must be a string")
    if kind == "message":
        role = item.get("role")
        return _content_segments(item.get("content"), role if isinstance(role, str) else "user", where)
    if kind in _CALLS:
        return _string_field(item, _CALLS[kind], "assistant", where)
    if kind in _OUTPUTS:
        output = item.get("output")
        if isinstance(output, list):
            return _content_segments(output, "tool", where, field="output")
        return _string_field(item, "output", "tool", where)
    return []  # reasoning (model-signed), references, images, files, ...: no text we may edit


def _content_segments(content: Any, role: str, where: tuple[Any, ...],
                      field: str = "content") -> list[Segment]:
    if isinstance(content, str):
        return [Segment(content, role, (*where, field))]
    if not isinstance(content, list):
        raise MalformedRequest(f"`{dotted((*where, field))}` must be a string or an array of content parts")
    segments: list[Segment] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise MalformedRequest(f"`{dotted((*where, field, j))}` must be an object")
        segments.extend(_part_segments(part, role, (*where, field, j)))
    return segments


def _part_segments(part: dict[str, Any], role: str, where: tuple[Any, ...]) -> list[Segment]:
    segments = []
    for field in _PART_TEXT:
        segments.extend(_string_field(part, field, role, where))
    return segments


def _string_field(item: dict[str, Any], field: str, role: str, where: tuple[Any, ...]) -> list[Segment]:
    value = item.get(field)
    if value is None:
        return []
    if not isinstance(value, str):
        raise MalformedRequest(f"`{dotted((*where, field))}` must be a string")
    return [Segment(value, role, (*where, field))]


# ---- responses and streams --------------------------------------------------------------------------------
def _output_item_segments(item: Any, where: tuple[Any, ...]) -> list[Segment]:
    """Assistant text of one output item: message parts, tool-call arguments, reasoning text."""
    if not isinstance(item, dict):
        return []
    kind = item.get("type")
    if isinstance(kind, str) and kind in _CALLS and isinstance(item.get(_CALLS[kind]), str):
        return [Segment(item[_CALLS[kind]], "assistant", (*where, _CALLS[kind]))]
    segments: list[Segment] = []
    for field in ("content", "summary"):
        parts = item.get(field)
        if isinstance(parts, list):
            for j, part in enumerate(parts):
                segments.extend(_assistant_part(part, (*where, field, j)))
    return segments


def _assistant_part(part: Any, where: tuple[Any, ...]) -> list[Segment]:
    if not isinstance(part, dict):
        return []
    return [Segment(part[f], "assistant", (*where, f)) for f in _PART_TEXT if isinstance(part.get(f), str)]


def _delta_key(payload: dict[str, Any], tag: str) -> Any:
    output_index = int_field(payload, "output_index", 0)
    if tag == "tool":
        return ("tool", output_index)
    index = int_field(payload, "content_index", int_field(payload, "summary_index", 0))
    return (output_index, index) if tag == "text" else (tag, output_index, index)


def _final_key(payload: dict[str, Any], locator: tuple[Any, ...]) -> Any:
    index = int_field(payload, "content_index", int_field(payload, "summary_index"))
    kind = payload.get("type") if isinstance(payload.get("type"), str) else None
    return ("final", kind, int_field(payload, "output_index"), index, *locator)

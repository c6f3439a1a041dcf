"""The API-shape contract: one subclass per wire format (OpenAI chat, Ollama, Anthropic, ...).

A shape turns request and response documents into `Segment`s, writes edited text back into the *original*
parsed document (so fields it does not know survive), decodes streamed records into `TextDelta`s and
re-encodes an edited record, and renders errors in its API's own format.

Locators are paths into the parsed JSON document, e.g. `("messages", 2, "content")` or
`("messages", 0, "content", 1, "text")`; `set_path` writes through them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import orjson

from extproc.document import read_path, write_path
from extproc.errors import MalformedRequest
from extproc.framing import Record
from extproc.model import ParsedRequest, Segment, TextDelta, ToolCall, ToolChoice, ToolFragment


class Shape(ABC):
    name: ClassVar[str]
    # Request paths (query string stripped) this shape serves, e.g. ("/v1/chat/completions",).
    paths: ClassVar[tuple[str, ...]]
    # Framing of streamed responses.
    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    # Where a request caps the tokens to generate, in the order they are honoured (first present wins).
    output_limit_fields: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @abstractmethod
    def parse_request(self, doc: Any) -> ParsedRequest:
        """Segments (system, user, tool, ...), model name, stream flag and declared tools."""

    @abstractmethod
    def response_segments(self, doc: Any) -> list[Segment]:
        """Text segments of a complete (non-streamed) response document."""

    @abstractmethod
    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        """Text deltas carried by one decoded streamed event (`payload` is its parsed JSON)."""

    def decode_record(self, record: Record) -> Any | None:
        """The parsed JSON of a streamed record, or None for records that carry no JSON ([DONE], comments)."""
        data = record.data
        if data is None or data == b"[DONE]" or not data.strip():
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return None

    def encode_record(self, record: Record, payload: Any) -> bytes:
        """Re-frame an edited payload as the same kind of record, as it was framed on the wire (the framing
        is sniffed from the bytes): a JSON line keeps its line ending; an SSE event keeps its other lines
        (`event:`, `id:`, `retry:`, comments) and their order, with its data lines replaced by one."""
        body = orjson.dumps(payload)
        if record.raw.lstrip()[:1] in (b"{", b"["):
            return body + (b"\r\n" if record.raw.endswith(b"\r\n") else b"\n")
        out: list[bytes] = []
        for line in record.raw.splitlines(keepends=True):
            if line.split(b":", 1)[0] == b"data" and line.count(b":") >= 1:
                if not any(piece.startswith(b"data: ") for piece in out):
                    out.append(b"data: " + body + (line[len(line.rstrip(b"\r\n")):] or b"\n"))
            else:
                out.append(line)
        return b"".join(out)

    @abstractmethod
    def error_body(self, status: int, code: str, message: str) -> bytes:
        """A complete error response body in this API's format."""

    @abstractmethod
    def stream_error_event(self, code: str, message: str) -> bytes:
        """The record that ends a stream with an error in this API's streaming format."""

    # How a stream ended by a deny tells the user (settings.stream_deny_notice: auto picks this): "error" (the
    # API's error event), "content" (a last assistant text chunk saying so, then the stream's normal end:
    # for chat UIs that drop error events) or "both".
    default_deny_notice: ClassVar[str] = "error"

    def stream_notice(self, text: str, final: bool) -> bytes:
        """A last assistant text chunk carrying `text`; with `final`, followed by the stream's normal end.
        b"" for APIs where a text chunk cannot be appended safely (the error event is used instead)."""
        return b""

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        """Of the stream's delta `keys`, those this event ends (no more text will come for them). Used to know
        when a streamed tool call is complete; it never releases held text (only the bytes ending do)."""
        return []

    # ---- token usage (optional; shapes that report usage override these) ---------------------------------
    def usage_of(self, payload: Any) -> dict[str, int] | None:
        """`{"input_tokens": n, "output_tokens": m}` (either may be absent) reported by a response document
        or streamed event, or None."""
        return None

    def ask_stream_usage(self, doc: Any) -> bool:
        """Make a streaming request ask the upstream for usage; True if the document was changed."""
        return False

    def is_usage_only(self, payload: Any) -> bool:
        """A streamed event that carries only usage (dropped from the client's stream if we asked for it)."""
        return False

    # ---- tools (optional; every API with tools declares them in `tools[]`) --------------------------------
    # Request fields that only make sense with tools: dropped together with the last tool.
    tool_option_fields: ClassVar[tuple[str, ...]] = ("tool_choice",)

    def tool_name(self, tool: dict[str, Any]) -> str | None:
        """The name of one declared tool; a hosted tool without a name (e.g. `web_search`) goes by its type."""
        name = tool.get("name", tool.get("type"))
        return name if isinstance(name, str) else None

    def tool_choice(self, doc: Any) -> ToolChoice | None:
        """The request's tool_choice, or None when it has none."""
        return None

    def remove_tools(self, doc: Any, indexes: set[int]) -> None:
        """Remove the declared tools at `indexes`; with no tool left, remove the tool options too."""
        doc["tools"] = [tool for i, tool in enumerate(doc["tools"]) if i not in indexes]
        if not doc["tools"]:
            for field in ("tools", *self.tool_option_fields):
                doc.pop(field, None)

    def response_tool_calls(self, doc: Any) -> list[ToolCall]:
        """The assistant's tool calls in a complete response document."""
        return []

    def tool_fragments(self, payload: Any) -> list[ToolFragment]:
        """Pieces of assistant tool calls in one streamed event; a call ends when `closed_keys` ends its key."""
        return []

    # ---- fields the checks and limits need: shapes own the wire format, checks never read vendor JSON --------
    messages_field: ClassVar[str] = "messages"  # the request's list of messages / input items

    def message_count(self, doc: Any) -> int | None:
        messages = doc.get(self.messages_field) if isinstance(doc, dict) else None
        return len(messages) if isinstance(messages, list) else None

    def set_model(self, doc: Any, model: str) -> None:
        """Rewrite the requested model (an alias resolved by the models check)."""
        doc["model"] = model

    def served_model(self, payload: Any) -> str | None:
        """The `model` a response document or streamed event reports: top level (OpenAI, Ollama, Anthropic
        message), or inside `response` (OpenAI Responses events) or `message` (Anthropic `message_start`)."""
        if not isinstance(payload, dict):
            return None
        for holder in (payload, payload.get("response"), payload.get("message")):
            if isinstance(holder, dict) and isinstance(holder.get("model"), str):
                return str(holder["model"])
        return None

    def choices_requested(self, doc: Any) -> int:
        """How many answers the request asks for (`n`), at least 1."""
        choices = doc.get("n") if isinstance(doc, dict) else None
        return choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1

    def tool_texts(self, tools: list[dict[str, Any]]) -> list[str]:
        """Descriptions of each declared tool and of its parameters (OpenAI chat/Responses, Anthropic, Ollama)."""
        texts: list[str] = []
        for tool in tools:
            function = tool.get("function")
            spec: dict[str, Any] = function if isinstance(function, dict) else tool
            if isinstance(spec.get("description"), str):
                texts.append(spec["description"])
            schema = spec.get("parameters") if "parameters" in spec else spec.get("input_schema")
            _schema_descriptions(schema, texts, 0)
        return texts

    def write_text(self, doc: Any, locator: tuple[Any, ...], text: str) -> None:
        """Write edited text back at a segment's locator."""
        set_path(doc, locator, text)


set_path = write_path
get_path = read_path
MAX_SCHEMA_DEPTH = 16


def _schema_descriptions(node: Any, out: list[str], depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                out.append(value)
            else:
                _schema_descriptions(value, out, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _schema_descriptions(value, out, depth + 1)


def tool_call(name: Any, arguments: Any, key: Any = None) -> ToolCall:
    """A ToolCall from wire values: JSON-text arguments are parsed (empty text is no arguments)."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            pass
    return ToolCall(name if isinstance(name, str) else None, arguments, key)


def named_tool(tool: Any) -> str | None:
    """The name of a `{"type": T, T: {"name": ...}}` tool or tool_choice (OpenAI chat, Ollama)."""
    if not isinstance(tool, dict):
        return None
    kind = tool.get("type", "function")
    inner = tool.get(kind) if isinstance(kind, str) else None
    name = inner.get("name") if isinstance(inner, dict) else kind
    return name if isinstance(name, str) else None


def optional_string(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is not None and not isinstance(value, str):
        raise MalformedRequest(f"`{field}` must be a string")
    return value


def build_request(doc: dict[str, Any], segments: list[Segment],
                  stream_default: bool = False) -> ParsedRequest:
    """A ParsedRequest with the checked `model`, `stream` (absent or null => `stream_default`) and `tools`."""
    stream = doc.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise MalformedRequest("`stream` must be a boolean")
    tools = doc.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise MalformedRequest("`tools` must be an array of objects")
    return ParsedRequest(doc, segments, optional_string(doc, "model"),
                         stream_default if stream is None else stream, tools or [])

"""The neutral text model shared by API shapes, detectors and the policy engine.

Shapes turn wire formats into these objects; detectors read text and return `Finding`s; the policy engine
turns findings into one decision. Nothing here knows about protobuf or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REQUEST = "request"
RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of text inside a document, with a locator only its shape understands."""

    text: str
    role: str  # system | user | assistant | tool | developer | prompt | ...
    locator: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's hit: `text[start:end]` of the scanned string is a `label` (e.g. `openai_api_key`)."""

    detector: str
    label: str
    start: int
    end: int
    score: float = 1.0
    # What a redact action writes instead of the match, when the detector knows better than the rule's
    # placeholder (e.g. a neutralised link keeps its text but loses its target).
    replacement: str | None = None


@dataclass(slots=True)
class ParsedRequest:
    """What a shape extracted from a request body."""

    doc: Any
    segments: list[Segment]
    model: str | None = None
    stream: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text carried by one streamed event for one choice/content block (`key`)."""

    key: Any
    text: str
    locator: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ToolFragment:
    """A piece of one assistant tool call carried by a streamed event. `key` names the call within the stream
    (the shape's delta key for its arguments); `arguments` is a piece of JSON text, or the whole arguments
    object when `whole` is set (the event carries the complete call)."""

    key: Any
    name: str | None = None
    arguments: Any = None
    whole: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete assistant tool call: `arguments` is the parsed object, or the raw text if it is not JSON."""

    name: str | None
    arguments: Any
    key: Any = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """A request's tool_choice, neutral: mode is none | auto | required | tool (then `name` is the forced tool)."""

    mode: str
    name: str | None = None

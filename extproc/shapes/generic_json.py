"""Any JSON body on a path no other shape serves (`/api/chat/x`, a new vendor endpoint, a path spelled in a
way the proxy and the server read differently): complete mediation says it is still an LLM exchange. This
shape claims no segment, so every string of the request and of the response is scanned as role `other`; the
model is read from a top-level `model` string, as every LLM API names it. Errors use OpenAI's format, the
one most clients understand."""

from __future__ import annotations

from typing import Any

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request
from extproc.shapes.openai_chat import openai_error

NAME = "generic_json"


@register
class GenericJson(Shape):
    name = NAME
    paths = ()
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        if not isinstance(doc, dict):
            raise MalformedRequest("request body must be a JSON object")
        return build_request(doc, [])

    def response_segments(self, doc: Any) -> list[Segment]:
        return []

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        return []

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        return b"data: " + openai_error(403, code, message) + b"\n\n"

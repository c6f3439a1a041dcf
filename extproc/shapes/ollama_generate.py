"""Ollama's native completion API (`/api/generate`): `system`, `prompt` and `suffix` strings in (`images` and
the `context` token array are left alone); `response` (and `thinking`) out. Streaming is the default (`stream`
absent => true): NDJSON lines with `response` deltas, the last `done: true` with `prompt_eval_count` and
`eval_count`. Errors are `{"error": "..."}`, in a stream as one more line."""

from __future__ import annotations

from typing import Any

import orjson

from extproc.model import ParsedRequest, Segment, TextDelta
from extproc.shapes import register
from extproc.shapes.base import build_request, optional_string
from extproc.shapes.ollama_chat import OllamaFamily
from extproc.shapes.openai_completions import request_object

_REQUEST_FIELDS = (("system", "system"), ("prompt", "user"), ("suffix", "user"))
_RESPONSE_FIELDS = ("response", "thinking")


@register
class OllamaGenerate(OllamaFamily):
    name = "ollama_generate"
    output_limit_fields = (("options", "num_predict"),)
    paths = ("/api/generate",)
    stream_framing = "ndjson"

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        segments = [Segment(text, role, (field,)) for field, role in _REQUEST_FIELDS
                    if (text := optional_string(doc, field)) is not None]
        return build_request(doc, segments, stream_default=True)

    def response_segments(self, doc: Any) -> list[Segment]:
        return [Segment(text, "assistant", (field,)) for field, text in _texts(doc)]

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        return [TextDelta(field, text, (field,)) for field, text in _texts(payload) if text]

    def stream_notice(self, text: str, final: bool) -> bytes:
        return orjson.dumps({"response": text, "done": True, "done_reason": "stop"}) + b"\n"



def _texts(doc: Any) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        return []
    return [(field, doc[field]) for field in _RESPONSE_FIELDS if isinstance(doc.get(field), str)]

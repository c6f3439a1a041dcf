"""OpenAI Embeddings (`/v1/embeddings`), as served by OpenAI, vLLM, llama.cpp and Ollama's OpenAI-compatible
endpoint. Only the request carries text (`input`: a string or an array of strings; token-id arrays are left
alone); the response is vectors, so it has no text segments and there is no stream."""

from __future__ import annotations

from typing import Any

from extproc.model import ParsedRequest, Segment, TextDelta
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request
from extproc.shapes.openai_chat import openai_error, openai_usage
from extproc.shapes.openai_completions import request_object, sse_error_event, text_or_texts


@register
class OpenAIEmbeddings(Shape):
    name = "openai_embeddings"
    paths = ("/v1/embeddings", "/embeddings", "/openai/v1/embeddings")
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        return build_request(doc, text_or_texts(doc, "input", "user", required=True))

    def response_segments(self, doc: Any) -> list[Segment]:
        return []

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        return []

    def usage_of(self, payload: Any) -> dict[str, int] | None:
        return openai_usage(payload)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)

    def stream_error_event(self, code: str, message: str) -> bytes:
        return sse_error_event(openai_error(403, code, message))

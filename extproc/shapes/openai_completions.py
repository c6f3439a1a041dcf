"""OpenAI legacy Completions (`/v1/completions`), as served by OpenAI, vLLM, llama.cpp and Ollama's
OpenAI-compatible endpoint. `prompt` is a string or an array of strings (token-id arrays carry no text we
can scan and are left alone); streams are SSE `data: {chunk}` records with `choices[i].text`, then `[DONE]`.

The request helpers at the top are shared by the other shape modules of this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from extproc.errors import MalformedRequest
from extproc.model import ParsedRequest, Segment, TextDelta
from extproc.shapes import register
from extproc.shapes.base import Shape, build_request, optional_string  # noqa: F401 (re-exported)
from extproc.shapes.openai_chat import OpenAIFamily, finished_choices


# ---- request helpers shared by the shape modules ----------------------------------------------------------
def request_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise MalformedRequest("request body must be a JSON object")
    return doc


def text_or_texts(doc: dict[str, Any], field: str, role: str, required: bool = False) -> list[Segment]:
    """Segments of a field holding a string or an array of strings; token-id arrays are skipped."""
    value = doc.get(field)
    if isinstance(value, str):
        return [Segment(value, role, (field,))]
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, list)) for v in value):
        raise MalformedRequest(f"`{field}` must be a string, an array of strings or an array of token ids")
    return [Segment(v, role, (field, i)) for i, v in enumerate(value) if isinstance(v, str)]


def string_leaves(value: Any, where: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """Every string value inside a JSON value (object keys excluded), in document order, with its path."""
    found: list[tuple[tuple[Any, ...], str]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [(where, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            found.append((path, node))
        elif isinstance(node, dict):
            stack.extend(((*path, key), node[key]) for key in reversed(list(node)))
        elif isinstance(node, list):
            stack.extend(((*path, i), node[i]) for i in reversed(range(len(node))))
    return found


def token_usage(usage: Any, inputs: tuple[str, ...], output: str) -> dict[str, int] | None:
    """`{"input_tokens": sum of the `inputs` counts, "output_tokens": the `output` count}` of a usage object;
    counts it does not report are left out."""
    if not isinstance(usage, dict):
        return None
    counts = [usage[field] for field in inputs if isinstance(usage.get(field), int)]
    out = {"input_tokens": sum(counts)} if counts else {}
    if isinstance(usage.get(output), int):
        out["output_tokens"] = usage[output]
    return out or None


def dotted(locator: tuple[Any, ...]) -> str:
    """A locator as a field name for error messages: `messages[2].content[0].text`."""
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in locator).lstrip(".")


def int_field(obj: dict[str, Any], field: str, default: Any = None) -> Any:
    """An index field of a streamed event, or `default` if it is missing or not an integer (delta keys must
    be hashable)."""
    value = obj.get(field)
    return value if isinstance(value, int) else default


def sse_error_event(body: bytes, event: str | None = None) -> bytes:
    prefix = b"event: " + event.encode() + b"\n" if event else b""
    return prefix + b"data: " + body + b"\n\n"


# ---- the shape --------------------------------------------------------------------------------------------
@register
class OpenAICompletions(OpenAIFamily):
    name = "openai_completions"
    output_limit_fields = (("max_tokens",),)
    paths = ("/v1/completions", "/completions", "/openai/v1/completions")
    stream_framing = "sse"

    def parse_request(self, doc: Any) -> ParsedRequest:
        doc = request_object(doc)
        segments = text_or_texts(doc, "prompt", "user", required=True)
        suffix = optional_string(doc, "suffix")
        if suffix is not None:
            segments.append(Segment(suffix, "user", ("suffix",)))
        return build_request(doc, segments)

    def response_segments(self, doc: Any) -> list[Segment]:
        return [Segment(text, "assistant", ("choices", i, "text")) for i, _, text in _choice_texts(doc)]

    def stream_deltas(self, payload: Any) -> list[TextDelta]:
        return [TextDelta(index, text, ("choices", i, "text"))
                for i, index, text in _choice_texts(payload) if text]

    default_deny_notice = "both"

    def stream_notice(self, text: str, final: bool) -> bytes:
        event = b"data: " + orjson.dumps({"object": "text_completion", "choices": [
            {"index": 0, "text": text, "finish_reason": "stop"}]}) + b"\n\n"
        return event + (b"data: [DONE]\n\n" if final else b"")

    def closed_keys(self, payload: Any, keys: Iterable[Any]) -> list[Any]:
        finished = finished_choices(payload)
        return [k for k in keys if k in finished]


def _choice_texts(doc: Any) -> list[tuple[int, Any, str]]:
    """(position, choice index, text) of every choice carrying a `text` string."""
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list):
        return []
    return [(i, int_field(choice, "index", i), choice["text"]) for i, choice in enumerate(choices)
            if isinstance(choice, dict) and isinstance(choice.get("text"), str)]

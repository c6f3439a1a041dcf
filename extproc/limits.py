"""Request size limits beyond bytes (OWASP LLM10 2025 / LLM06 2026, unbounded consumption): number of
messages, estimated prompt tokens, and the output-token cap a request asks for (clamped or refused)."""

from __future__ import annotations

from typing import Any

from extproc import document
from extproc.errors import MalformedRequest, PayloadTooLarge
from extproc.model import ParsedRequest
from extproc.shapes.base import Shape, get_path, set_path

CHARS_PER_TOKEN = 4  # a deliberately simple estimate; real tokenisers vary by model and language


def estimate_tokens(parsed: ParsedRequest) -> int:
    return sum(len(segment.text) for segment in parsed.segments) // CHARS_PER_TOKEN + 1


def estimate_all_tokens(parsed: ParsedRequest) -> int:
    """The limit counts every string of the request, not only the fields a shape names (complete
    mediation: a server may read a field the shape does not know)."""
    return sum(len(text) for _, text in document.strings(parsed.doc)) // CHARS_PER_TOKEN + 1


def enforce(limits: Any, shape: Shape, parsed: ParsedRequest) -> bool:
    """Raise for requests over a limit; clamp the output cap when configured. True if `parsed.doc` changed."""
    messages = shape.message_count(parsed.doc)
    if limits.max_messages is not None and messages is not None and messages > limits.max_messages:
        raise PayloadTooLarge(f"the request has {messages} messages; the limit is {limits.max_messages}",
                              code="too_many_messages")
    if limits.max_prompt_tokens is not None:
        estimate = estimate_all_tokens(parsed)
        if estimate > limits.max_prompt_tokens:
            raise PayloadTooLarge(f"the prompt is about {estimate} tokens; the limit is {limits.max_prompt_tokens}",
                                  code="prompt_too_long")
    if limits.max_output_tokens is None:
        return False
    return _cap_output(limits, shape, parsed.doc)


def _cap_output(limits: Any, shape: Shape, doc: Any) -> bool:
    cap = limits.max_output_tokens
    for locator in shape.output_limit_fields:
        try:
            asked = get_path(doc, locator)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(asked, int) or isinstance(asked, bool):
            raise MalformedRequest(f"`{'.'.join(locator)}` must be an integer")
        if 0 <= asked <= cap:
            return False
        if limits.on_output_over == "deny":
            raise PayloadTooLarge(f"`{'.'.join(locator)}` asks for {asked} tokens; the limit is {cap}",
                                  code="max_tokens_too_large")
        set_path(doc, locator, cap)
        return True
    if limits.on_output_over == "clamp" and shape.output_limit_fields and isinstance(doc, dict):
        _set_missing(doc, shape.output_limit_fields[-1], cap)  # absent = unbounded: impose the cap
        return True
    return False


def _set_missing(doc: dict, locator: tuple[str, ...], value: int) -> None:
    target = doc
    for step in locator[:-1]:
        if target.get(step) is None:
            target[step] = {}
        if not isinstance(target[step], dict):
            return
        target = target[step]
    target[locator[-1]] = value

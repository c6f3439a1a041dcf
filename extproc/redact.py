"""Turning findings into replacement text: placeholder, mask or keyed hash, per rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extproc.digest import keyed_digest
from extproc.document import is_joined
from extproc.model import Segment


@dataclass(frozen=True, slots=True)
class Span:
    """Replace `text[start:end]` by `replacement` (offsets in the text being edited)."""

    start: int
    end: int
    replacement: str


def replacement_for(redaction, label: str, value: str) -> str:  # type: ignore[no-untyped-def]
    if redaction.format == "mask":
        return "*" * len(value)
    tag = label.upper()
    if redaction.format == "hash":
        return f"[{tag}:{keyed_digest(value)[:8]}]"
    return redaction.placeholder.replace("{LABEL}", tag).replace("{label}", label)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Sort and merge overlapping spans; the earliest-starting span's replacement wins."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end > last.end:
                merged[-1] = Span(last.start, span.end, last.replacement)
            continue
        merged.append(span)
    return merged


def apply_spans(text: str, spans: list[Span]) -> str:
    """Apply merged, sorted spans to text."""
    if not spans:
        return text
    out: list[str] = []
    cursor = 0
    for span in spans:
        out.append(text[cursor : span.start])
        out.append(span.replacement)
        cursor = span.end
    out.append(text[cursor:])
    return "".join(out)


def redacted_pieces(segment: Segment, spans: list[Span]) -> list[tuple[tuple[Any, ...], str]]:
    """(locator, new text) for each string of `segment` that merged, sorted `spans` touch. A joined segment
    (many strings scanned as one) is split back into its strings; a span across two strings puts its
    replacement in the first and removes the covered part of the second."""
    if not is_joined(segment.locator):
        return [(segment.locator, apply_spans(segment.text, spans))]
    out = []
    for start, end, locator in segment.locator[1]:
        local = [Span(max(s.start, start) - start, min(s.end, end) - start,
                      s.replacement if s.start >= start else "")
                 for s in spans if s.start < end and s.end > start]
        if local:
            out.append((locator, apply_spans(segment.text[start:end], local)))
    return out

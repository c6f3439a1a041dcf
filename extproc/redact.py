"""Turning findings into replacement text: placeholder, mask or keyed hash, per rule."""

from __future__ import annotations

from dataclasses import dataclass

from extproc.digest import keyed_digest


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

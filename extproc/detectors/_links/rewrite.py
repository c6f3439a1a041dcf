"""What each hit is replaced with, and keeping replacements from joining the text around them into a new
link or tag."""

from __future__ import annotations

from bisect import bisect_left

from extproc.detectors._links.bare import BareUrls
from extproc.detectors._links.grammar import TAG_LIKE
from extproc.detectors._links.text_index import SPACES, Hit, Index
from extproc.redact import Span, apply_spans, merge_spans

_STRIP = str.maketrans("", "", "[]<>")


def set_replacements(text: str, hits: list[Hit], bare: BareUrls | None) -> None:
    """Inner constructs first: a link's replacement keeps its text with the findings inside it applied."""
    by_start = sorted(hits, key=lambda h: h.start)
    starts = [h.start for h in by_start]
    for hit in sorted(hits, key=lambda h: h.end - h.start):
        if hit.kind in ("autolink", "bare"):
            hit.replacement = "[link removed]" if hit.end - hit.start > 1 else ""
            continue
        if hit.inner is None:
            continue
        start, end = hit.inner
        contained = [Span(h.start - start, h.end - start, h.replacement)
                     for h in by_start[bisect_left(starts, start) : bisect_left(starts, end)]
                     if h.end <= end and h is not hit]
        readable = _readable(apply_spans(text[start:end], merge_spans(contained)), bare)
        if hit.kind == "image":
            alt = " ".join(readable.split())
            hit.replacement = f"[image removed: {alt}]" if alt else "[image removed]"
        else:  # after a `]`, a leading `(` or `:` would make a new link or definition
            hit.replacement = " " + readable if readable[:1] in ("(", ":") else readable


def _readable(inner: str, bare: BareUrls | None) -> str:
    """Link text or alt, its findings already replaced, without tags, brackets and (if asked) bare URLs."""
    readable = (TAG_LIKE.sub("", inner) if "<" in inner else inner).translate(_STRIP)
    if bare is not None:
        spans = [Span(h.start, h.end, "link removed") for h in bare.find(Index(readable))]
        readable = apply_spans(readable, merge_spans(spans))
    return readable


def separate(text: str, hits: list[Hit]) -> None:
    """Redaction must not join what is left into a new construct: a replacement ending in `]` gets a space
    before a following `(`, `[` or `:` (a new link), and a removal becomes a space unless whitespace follows
    (`]` and `(`, `<` and a tag name, two halves of a URL must stay apart). Applied to the winner of each
    group of overlapping findings, as redaction merges them. Sorts `hits` by (start, -end)."""
    hits.sort(key=lambda h: (h.start, -h.end))
    index = 0
    while index < len(hits):
        winner, end = hits[index], hits[index].end
        index += 1
        while index < len(hits) and hits[index].start < end:
            end = max(end, hits[index].end)
            index += 1
        if winner.replacement.endswith("]") and end < len(text) and text[end] in "([:":
            winner.replacement += " "
        elif not winner.replacement and end < len(text) and text[end] not in SPACES:
            winner.replacement = " "

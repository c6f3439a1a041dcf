"""Markdown images, links, reference definitions and autolinks with an unsafe destination.

Every construct is found from its tail (`](` or `]:` and the destination), then extended back to its `[`
(or `![`) when the pair is near; a tail with no near opener is still broken open, since a renderer may find
an opener we do not.
"""

from __future__ import annotations

from extproc.detectors._allowance import Allowance
from extproc.detectors._links.grammar import (
    AUTOLINK_START,
    DEF_HEAD_RE,
    DEF_PRE,
    DEF_RE,
    HEAD_RE,
    INLINE_PRE,
    INLINE_RE,
    TAIL_MAX,
    TEXT_MAX,
    URL_MAX,
    may_change,
)
from extproc.detectors._links.html import HtmlRules
from extproc.detectors._links.text_index import Hit, Index
from extproc.detectors._links.urls import UrlPolicy

# Work one `find` may spend reading destinations, in window characters: 4 per character of text plus a fixed
# part; each tail also costs `_TAIL_UNITS` (its few RE2 calls). Every `](` scans a window after it, and in
# text made of nothing but `](` the windows overlap and would cost up to `TAIL_MAX` characters each. Past the
# allowance, a tail is broken open without reading its destination (fail closed, in constant time). Links
# every 56 characters (each reading a window of 128), or any 200 links, stay within it.
_UNITS_PER_CHAR, _BASE_UNITS, _TAIL_UNITS = 4, 16 * TAIL_MAX, 96


class MarkdownRules:
    def __init__(self, urls: UrlPolicy, html: HtmlRules, images_only: bool) -> None:
        self._urls = urls
        self._html = html
        self._images_only = images_only

    def find(self, index: Index) -> list[Hit]:
        """Images, links and reference definitions (autolinks are `autolinks`)."""
        hits: list[Hit] = []
        allowance = Allowance(index.n * _UNITS_PER_CHAR, _BASE_UNITS, 1)
        text = index.text
        for m in index.positions("]"):  # every `](` and `]:`
            if text[m + 1 : m + 2] not in ("(", ":"):
                continue
            if allowance.exhausted:  # break it open, as a tail with no opener
                hits.append(Hit(m, m + 2, "unsafe_link", "tail"))
                continue
            end, kind = self._tail_end(index, m, allowance)
            if end is not None:
                hit = self._tail_hit(index, m, end, kind)
                if hit is not None:
                    hits.append(hit)
        return hits

    def _tail_end(self, index: Index, m: int, allowance: Allowance) -> tuple[int | None, str]:
        """End (from the `]` at `m`) of an unsafe destination, or None; and the kind, inline or def."""
        text = index.text
        kind = "inline" if text[m + 1] == "(" else "def"
        window = _window(text, m, INLINE_PRE if kind == "inline" else DEF_PRE, TAIL_MAX + 1)
        allowance.charge(_TAIL_UNITS + len(window))
        if kind == "inline":
            return self._inline_tail(window, len(window) == TAIL_MAX + 1), kind
        full = len(window) == TAIL_MAX + 1
        at_end = m + len(window) == index.n
        # a definition ends at a line end; the end of the text counts as one
        return self._def_tail(window + "\n" if at_end and not full else window, full), "def"

    def _tail_hit(self, index: Index, m: int, end: int, kind: str) -> Hit | None:
        """The finding for an unsafe destination at `m` (`](` or `]:`), from its `[` (`![`) if near."""
        opener = index.pairs().get(m)
        if opener is None or m - opener - 1 > TEXT_MAX:
            return Hit(m, m + end, "unsafe_link", "tail")
        if kind == "def":
            return Hit(opener, m + end, "unsafe_link", "def")
        if opener > 0 and index.text[opener - 1] == "!":
            return Hit(opener - 1, m + end, "unsafe_image", "image", (opener + 1, m))
        if not self._images_only:
            return Hit(opener, m + end, "unsafe_link", "link", (opener + 1, m))
        return None

    def _inline_tail(self, window: str, full: bool) -> int | None:
        """End (from the `]`) of an unsafe inline destination, or None if it is safe or not one."""
        match = INLINE_RE.match(window)
        if match and match.end() <= TAIL_MAX:
            dest, (start, end) = _destination(INLINE_RE, match)
            if self._urls.unsafe(dest, markdown=True) or self._dest_may_change(window, start, end):
                return match.end()
            return None
        # Not a destination CommonMark accepts (or longer than we parse): lenient renderers may still link the
        # URL that starts it, and one running past our bound is unsafe.
        head = HEAD_RE.match(window)
        if full and head.end() >= len(window):
            return 2  # break it open
        return max(head.end(), 2) if self._head_unsafe(head.group(1)) else None

    def _def_tail(self, window: str, full: bool) -> int | None:
        match = DEF_RE.match(window)
        if match and match.end() - 1 <= TAIL_MAX:
            dest, (start, end) = _destination(DEF_RE, match)
            if self._urls.unsafe(dest, markdown=True) or self._dest_may_change(window, start, end):
                return match.end() - 1
            return None
        # Not a definition as it stands (text after the destination, or longer than we parse), but removing a
        # tag after it would make it one: break it open when its destination is unsafe.
        head = DEF_HEAD_RE.match(window)
        return 2 if (full and head.end() >= len(window)) or self._head_unsafe(head.group(1)) else None

    def _head_unsafe(self, head: str) -> bool:
        """A destination's first token: unsafe as it stands, without its `<`, or once a finding in it is
        replaced."""
        return self._urls.unsafe(head, markdown=True) or (
            head.startswith("<") and self._urls.unsafe(head[1:], markdown=True)) or may_change(head)

    def _dest_may_change(self, window: str, start: int, end: int) -> bool:
        """Could replacing a finding inside this (safe) destination make it unsafe (`](ht[tp://evil](x))`)?
        A `<destination>` that is itself an HTML tag we remove counts too: what follows would become it."""
        if may_change(window[start:end]):
            return True
        if start == 0 or window[start - 1] != "<":
            return False
        pointy = window[start - 1 : end + 1]
        return Index(pointy).tag_end(0) != len(pointy) - 1 or self._html.tag_unsafe(pointy)[1]

    def autolinks(self, index: Index) -> list[Hit]:
        """`<scheme:...>` autolinks (links, so none with `images_only`)."""
        if self._images_only:
            return []
        text, hits = index.text, []
        for match in AUTOLINK_START.finditer(text):
            s = match.start()
            if not 2 <= match.end() - s - 2 <= 32:
                continue
            end = index.run_end("autolink", s + 1)
            if end - s - 1 > URL_MAX:
                hits.append(Hit(s, s + 1, "unsafe_link", "autolink"))  # too long to be sure: drop its `<`
            elif end < index.n and text[end] == ">" and self._urls.unsafe(text[s + 1 : end], markdown=False):
                hits.append(Hit(s, end + 1, "unsafe_link", "autolink"))
        return hits


def _window(text: str, start: int, pre, limit: int) -> str:  # type: ignore[no-untyped-def]
    """`text[start:]` cut to the shortest length that decides a construct: nothing in `pre`'s language (the
    prefixes of the construct) reaches past its end, or it is `limit` long."""
    size = 128
    while True:
        window = text[start : start + size]
        if size >= limit or len(window) < size or not pre.fullmatch(window):
            return window
        size = min(size * 4, limit)


def _destination(regex, match) -> tuple[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """The destination of a matched `INLINE_RE` / `DEF_RE` (without `<>`), and its span."""
    pointy = regex.groupindex["pointy"]
    if match.group(pointy) is not None:
        start, end = match.span(pointy)
        return match.group(pointy)[1:-1], (start + 1, end - 1)
    raw = regex.groupindex["raw"]
    return match.group(raw), match.span(raw)

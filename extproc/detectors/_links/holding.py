"""The streaming hold-back: how many trailing characters could still become (part of) a finding.

Every check looks forward from a candidate start only (`<`, `[`, `]`, `!`, a bare URL's anchor), so the last
`max_span - 1` characters suffice; a Markdown construct still open starts within its own bounds of the end.
The first candidate that is still open decides: everything from it on is held.
"""

from __future__ import annotations

from bisect import bisect_left

from extproc.detectors._links.bare import BareUrls
from extproc.detectors._links.grammar import (
    AUTOLINK_PRE,
    AUTOLINK_START,
    CONTAINER_MAX,
    DEF_PRE,
    INLINE_PRE,
    TAG_MAX,
    TAIL_MAX,
    TEXT_MAX,
    URL_MAX,
)
from extproc.detectors._links.html import CONTAINERS, HtmlRules
from extproc.detectors._links.text_index import Index


class Hold:
    def __init__(self, html: HtmlRules, bare: BareUrls | None, images_only: bool, max_span: int) -> None:
        self._html = html
        self._bare = bare
        self._images_only = images_only
        self._max_span = max_span

    def hold(self, text: str) -> int:
        window = text[max(0, len(text) - (self._max_span - 1)) :]
        n = len(window)
        index = Index(window)
        markdown_from = n - (TEXT_MAX + TAIL_MAX + 2)
        candidates = list(index.positions("<"))
        for char in "[]!":
            positions = index.positions(char)
            candidates += positions[bisect_left(positions, markdown_from) :]
        if self._bare is not None:
            candidates += _bare_candidates(window, self._bare)
        for position in sorted(candidates):
            if self._open_at(index, position):
                return n - position
        return 0

    def _open_at(self, index: Index, s: int) -> bool:
        """Could a finding start at `s` and still change or grow once more text arrives?"""
        text, n = index.text, index.n
        char = text[s]
        if char == "[":
            return _opener_open(index, s)
        if char == "!":
            return s == n - 1 or (text[s + 1] == "[" and _opener_open(index, s + 1))
        if char == "]":
            return _tail_open(index, s)
        if char == "<":
            return self._angle_open(index, s)
        return self._bare is not None and _bare_open(index, s, self._bare)

    def _angle_open(self, index: Index, s: int) -> bool:
        """Open as a tag or autolink, or as a lone `<` before something still open (see `_lone_angles` in
        unsafe_links.py): in a run of `<`, each is open if one after it is, worked out once per run from its
        end."""
        memo = index.angle_memo
        if s not in memo:
            text, n, end = index.text, index.n, s
            while end + 1 < n and text[end + 1] == "<":
                end += 1
            after = end + 1 < n and text[end + 1] in "[!]" and self._open_at(index, end + 1)
            for k in range(end, s - 1, -1):
                after = memo[k] = after or self._angle_own_open(index, k)
        return memo[s]

    def _angle_own_open(self, index: Index, s: int) -> bool:
        if index.n - s == 1:
            return True
        if not self._images_only and _autolink_open(index, s):
            return True
        char = index.text[s + 1]
        return char.isascii() and char.isalpha() and self._tag_open(index, s)

    def _tag_open(self, index: Index, s: int) -> bool:
        """The tag at `s` is still open, or it is unsafe and the block or link it starts is."""
        text, n = index.text, index.n
        close = index.tag_end(s)
        if close is None or close + 1 - s > TAG_MAX:
            return n - s <= TAG_MAX
        g = close + 1
        if g == n:
            return True
        name, unsafe = self._html.tag_unsafe(text[s:g])
        if not unsafe:
            return False
        if name in CONTAINERS:
            bound = s + CONTAINER_MAX
        elif name == "a":
            bound = g + TEXT_MAX
        else:
            return False
        closing = index.closing(name, g, bound)
        return closing[1] == n if closing is not None else n < bound


def _bare_candidates(window: str, bare: BareUrls) -> list[int]:
    """Where bare URL anchors start, and one that the end of the window cuts off."""
    found = [m.start() for m in bare.anchor_re.finditer(window)]
    n = len(window)
    for size in range(min(n, bare.longest_anchor - 1), 0, -1):  # an anchor cut off at the end
        tail = window[n - size :].lower()
        if any(a.startswith(tail) for a in bare.anchors):
            found.append(n - size)
            break
    return found


def _opener_open(index: Index, s: int) -> bool:
    close = index.pairs().get(s)
    if close is None:
        return index.n - s - 1 <= TEXT_MAX
    return close - s - 1 <= TEXT_MAX and _tail_open(index, close)


def _autolink_open(index: Index, s: int) -> bool:
    text, n = index.text, index.n
    end = index.run_end("autolink", s + 1)
    return (end == n and end - s - 1 <= URL_MAX and bool(AUTOLINK_PRE.fullmatch(text[s:]))) or (
        end == n - 1 and text[end] == ">" and bool(AUTOLINK_START.match(text, s)))


def _bare_open(index: Index, q: int, bare: BareUrls) -> bool:
    if index.n - q < bare.longest_anchor:  # the anchor itself may still be arriving
        rest = index.text[q:].lower()
        if any(a.startswith(rest) for a in bare.anchors):
            return True
    return index.run_end("url", q) == index.n and index.n - q <= URL_MAX


def _tail_open(index: Index, m: int) -> bool:
    text, n = index.text, index.n
    if n - m == 1:
        return True
    if n - m > TAIL_MAX or text[m + 1] not in "(:":
        return False
    return bool((INLINE_PRE if text[m + 1] == "(" else DEF_PRE).fullmatch(text[m:]))

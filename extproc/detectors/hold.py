"""Helpers that compute a tight streaming hold-back for common kinds of pattern.

Each returns how many trailing characters of `text` must be held because a match that continues into
text not yet seen could start there. They are exact upper bounds, never guesses: releasing anything
before the returned tail can never expose part of a future match.
"""

from __future__ import annotations

from collections.abc import Iterable


def hold_anchored(text: str, anchors: Iterable[str], max_span: int, ignore_case: bool = False) -> int:
    """Hold for patterns whose every match starts with one of `anchors`.

    A match that runs past the end of `text` starts within the last `max_span - 1` characters, and at that
    start the text either begins with an anchor or is a proper prefix of one (the anchor itself is cut off).
    """
    window_start = max(0, len(text) - (max_span - 1))
    window = text[window_start:]
    if ignore_case:
        window = window.lower()
    earliest = len(window)
    for anchor in anchors:
        anchor = anchor.lower() if ignore_case else anchor
        found = window.find(anchor)
        if found != -1 and found < earliest:
            earliest = found
        earliest = min(earliest, _partial_anchor_start(window, anchor))
    return len(window) - earliest


def _partial_anchor_start(window: str, anchor: str) -> int:
    """Start of the longest suffix of `window` that is a proper prefix of `anchor` (len(window) if none)."""
    for size in range(min(len(anchor) - 1, len(window)), 0, -1):
        if anchor.startswith(window[-size:]):
            return len(window) - size
    return len(window)


def hold_run(text: str, allowed: frozenset[str], max_span: int) -> int:
    """Hold for patterns whose matches consist only of characters in `allowed`: the trailing run of them."""
    limit = min(len(text), max_span - 1)
    size = 0
    while size < limit and text[-1 - size] in allowed:
        size += 1
    return size

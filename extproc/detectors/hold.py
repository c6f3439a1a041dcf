"""Helpers that compute a tight streaming hold-back for common kinds of pattern.

Each returns how many trailing characters of `text` must be held because a match that continues into
text not yet seen could start there. They are exact upper bounds, never guesses: releasing anything
before the returned tail can never expose part of a future match.
"""

from __future__ import annotations

import re._constants as sre  # the standard library's parser lists what characters a pattern holds
import re._parser as sre_parse
import string
from collections.abc import Iterable
from functools import cache
from typing import Any


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
    if max_span <= 1 or not text or text[-1] not in allowed:
        return 0
    tail = text[-(max_span - 1) :]
    return len(tail) - len(tail.rstrip(_joined(allowed)))  # str.rstrip walks the run in C


@cache
def _joined(allowed: frozenset[str]) -> str:
    return "".join(sorted(allowed))


# ---- the characters a pattern can match, for `hold_run` -----------------------------------------------------
_FOLDS_TO = {"s": ("\u017f",), "k": ("\u212a",)}  # RE2 folds these non-ASCII letters onto ASCII ones
_CATEGORIES = {sre.CATEGORY_DIGIT: set(string.digits), sre.CATEGORY_SPACE: set(" \t\n\r\f\v"),
               sre.CATEGORY_WORD: set(string.ascii_letters + string.digits + "_")}  # RE2's classes are ASCII
# RE2 syntax the standard library's parser reads differently (POSIX and Unicode classes, \Q..\E, \C, x{,n}):
# a pattern holding one gets no character set, so its hold stays the safe default.
_RE2_ONLY = ("[:", "\\p", "\\P", "\\Q", "\\C", "{,")


def pattern_chars(pattern: str, ignore_case: bool = False) -> frozenset[str] | None:
    """Every character a match of the RE2 `pattern` can contain, or None when that set is open-ended
    (`.`, negated classes) or cannot be known for sure; then no run-based hold applies."""
    if any(token in pattern for token in _RE2_ONLY):
        return None
    try:
        parsed = sre_parse.parse(pattern)
    except (sre.error, OverflowError, RecursionError):
        return None
    fold = ignore_case or bool(parsed.state.flags & sre.SRE_FLAG_IGNORECASE)
    chars = chars_of(parsed, fold)
    if chars is None or ("(?" in pattern or fold) and not all(c.isascii() for c in chars - set("\u017f\u212a")):
        return None  # case folding (maybe in a flag group) of non-ASCII letters has orbits `folds` does not know
    return frozenset(chars)


def chars_of(items: Any, fold: bool) -> set[str] | None:
    """The characters a parsed pattern can match (None: negated classes, `.`, ...); `fold`: ignoring case."""
    out: set[str] = set()
    for op, arg in items:
        if op is sre.LITERAL:
            sub: set[str] | None = folds(chr(arg), fold)
        elif op is sre.RANGE:
            sub = {f for code in range(arg[0], arg[1] + 1) for f in folds(chr(code), fold)}
        elif op is sre.CATEGORY:
            sub = _CATEGORIES.get(arg)
        elif op is sre.IN:
            sub = chars_of(arg, fold)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            sub = chars_of(arg[2], fold)
        elif op is sre.SUBPATTERN:
            sub = chars_of(arg[3], fold or bool(arg[1] & sre.SRE_FLAG_IGNORECASE))
        elif op is sre.BRANCH:
            subs = [chars_of(branch, fold) for branch in arg[1]]
            sub = None if None in subs else set().union(*subs)  # type: ignore[arg-type]
        else:  # assertions match no character; \B depends on the text before the scan: no set for it
            sub = set() if op is sre.AT and arg is not sre.AT_NON_BOUNDARY else None
        if sub is None:
            return None
        out |= sub
    return out


def folds(char: str, fold: bool) -> set[str]:
    return {char, char.lower(), char.upper(), *_FOLDS_TO.get(char.lower(), ())} if fold else {char}

"""The `regex` detector's streaming hold: tight (the trailing run of characters a pattern can match) when that
set is known, the whole `max_length` window when it is not, and sound either way (a property test streams
random text through the scanner's release rule and checks every finding of the whole text is settled)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.detectors.hold import pattern_chars
from extproc.detectors.regex import RegexDetector, RegexParams


def detector(*patterns: tuple[str, int], ignore_case: bool = False) -> RegexDetector:
    return RegexDetector(RegexParams(patterns=[
        {"label": f"p{i}", "pattern": p, "max_length": m, "ignore_case": ignore_case}
        for i, (p, m) in enumerate(patterns)]))


def test_finds_user_patterns_with_offsets():
    found = detector(("TICKET-[0-9]{4,8}", 15)).find("see TICKET-12345 now")
    assert [(f.label, f.start, f.end) for f in found] == [("p0", 4, 16)]


def test_hold_is_the_trailing_run_of_pattern_characters():
    d = detector(("TICKET-[0-9]{4,8}", 15), (r"[a-z0-9-]{1,40}\.corp\.internal", 54))
    assert d.hold("Caching the rules. ") == 0
    assert d.hold("see the Caching") == len("aching")  # upper-case C is no character of either pattern
    assert d.hold("ask TICKET-12") == len("TICKET-12")
    assert detector(("TICKET-[0-9]{4,8}", 15)).hold("TICKET-" + "1" * 20) == 14  # at most max_length - 1


@pytest.mark.parametrize("pattern", [
    "a.b",  # `.`: any character
    "[^ ]+x",  # negated class
    "[[:alpha:]]+",  # POSIX class: the standard library's parser would read it as a set of punctuation
    r"\pL+",  # Unicode class
    r"\Bfoo",  # depends on the character before the scan's start
    "a{,3}",  # RE2 reads it literally, the standard library as a repeat
    "(?i)straße",  # non-ASCII letters under case folding
    "(?si:é)x",  # the same in a flag group
])
def test_unknowable_character_sets_keep_the_whole_window(pattern):
    assert pattern_chars(pattern) is None
    assert detector((pattern, 20)).hold("x" * 50) == 19


def test_case_insensitive_patterns_fold_like_re2():
    chars = pattern_chars("(?i)sk")
    assert chars is not None and {"s", "S", "\u017f", "k", "K", "\u212a"} <= chars
    assert detector(("key-[0-9]+", 20), ignore_case=True).hold("the KEY-1") == len("KEY-1")


def check_streamed(d: RegexDetector, text: str, chunk: int) -> None:
    """stream_scan's release rule: every finding of the whole text ends up settled."""
    released, settled = 0, set()
    for end in [*range(chunk, len(text), chunk), len(text)]:
        boundary = end if end == len(text) else end - d.hold(text[released:end])
        hits = [(released + f.start, released + f.end) for f in d.find(text[released:end])]
        while any(start < boundary < stop for start, stop in hits):
            boundary = min(start for start, stop in hits if start < boundary < stop)
        settled.update(i for start, stop in hits if stop <= boundary for i in range(start, stop))
        released = max(released, boundary)
    assert all(settled.issuperset(range(f.start, f.end)) for f in d.find(text)), text


PIECES = ["TICKET-", "1234", "99", " ", "the ", "Ticket-", "db-1", ".corp", ".internal", "-", ".", "x", "\n"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25), st.integers(1, 9))
def test_tight_hold_is_sound(pieces, chunk):
    d = detector(("TICKET-[0-9]{4,8}", 15), (r"[a-z0-9-]{1,40}\.corp\.internal", 54))
    check_streamed(d, "".join(pieces), chunk)
    check_streamed(detector(("ticket-[0-9]{4,8}", 15), ignore_case=True), "".join(pieces), chunk)

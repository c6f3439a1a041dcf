"""Linear-time regular expressions (RE2) for built-in and user-supplied patterns alike."""

from __future__ import annotations

import re2

_OPTIONS_CACHE: dict[tuple[bool, bool], re2.Options] = {}


def _options(ignore_case: bool, dot_nl: bool) -> re2.Options:
    key = (ignore_case, dot_nl)
    if key not in _OPTIONS_CACHE:
        options = re2.Options()
        options.case_sensitive = not ignore_case
        options.dot_nl = dot_nl
        options.log_errors = False
        options.max_mem = 64 << 20
        _OPTIONS_CACHE[key] = options
    return _OPTIONS_CACHE[key]


def compile_re2(pattern: str, *, ignore_case: bool = False, dot_nl: bool = False):  # type: ignore[no-untyped-def]
    """Compile `pattern` with RE2; raise ValueError with a clear message if RE2 rejects it.

    RE2 has no backreferences or lookaround, and guarantees matching time linear in the input, so a
    pattern from a policy file can never cause catastrophic backtracking (ReDoS).
    """
    try:
        return re2.compile(pattern, _options(ignore_case, dot_nl))
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"pattern {pattern!r} is not valid RE2 (linear-time) syntax: {detail}") from None


def search_set(patterns: list[str]):  # type: ignore[no-untyped-def]
    """One RE2 pass telling which of `patterns` (compiled as `compile_re2` does) occur in a text: `.Match(text)`
    returns their indexes. A prefilter for detectors that would otherwise run many patterns one by one."""
    prefilter = re2.Set.SearchSet(_options(False, False))
    for pattern in patterns:
        prefilter.Add(pattern)
    prefilter.Compile()
    return prefilter


def match_spans(pattern, text: str):  # type: ignore[no-untyped-def]
    """(start, end) of every match of a compiled RE2 `pattern` in `text`, in characters.

    The binding converts byte offsets to character offsets match by match; ASCII text (the common case) has
    equal offsets, so it is matched as bytes, which halves the cost of each match."""
    subject = text.encode("ascii") if text.isascii() else text
    for match in pattern.finditer(subject):
        yield match.span()

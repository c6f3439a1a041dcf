"""The `secrets` detector's streaming hold (see `secrets.py` for what it must cover), built once per detector.

Per call: the earliest suffix of the tail that cuts an anchor short (a `str.endswith` over all partials per
case mode first), the trailing identifier run (measured once for every rule with a lead-in), and only when
some anchor occurs in the text at all (one case-insensitive RE2 search) the anchors' candidate starts and the
matches that straddle the boundary. Text without any anchor, most streamed prose, skips that costly part.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

from extproc.detectors.patterns import compile_re2
from extproc.model import Finding

FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(65, 91)}, "\u017f": "s", "\u212a": "k"})
_IDENT = string.ascii_letters + string.digits + "_.-\u017f\u212a"
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")  # RE2's \b is ASCII

Matches = Callable[[str], list[tuple[Finding, int]]]


def _alternation(literals: set[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(literals, key=len, reverse=True))


class SecretHold:
    """`hold(text)` for a list of compiled rules (`secrets._Compiled`)."""

    def __init__(self, rules: list[Any], max_span: int) -> None:
        self.rules, self.max_span = rules, max_span
        anchors: dict[tuple[str, bool], list[int]] = {}
        self.partials: tuple[dict, dict] = ({}, {})  # per case mode: proper prefix of an anchor -> rules
        for r, c in enumerate(rules):
            for anchor in c.anchors:
                anchors.setdefault((anchor, c.rule.ignore_case), []).append(r)
            for part in () if c.rule.lead_in else c.partials:
                self.partials[c.rule.ignore_case].setdefault(part, []).append(r)
        self.windows: tuple[dict, dict] = ({}, {})  # anchors by first two characters, with the widest window
        for (a, fold), rs in anchors.items():
            self.windows[fold].setdefault(a[:2], []).append((a, max(rules[r].span for r in rs) - 1, rs))
        self.longest = max((len(p) for parts in self.partials for p in parts), default=0)
        # The ignore-case trie also takes every character FOLD maps onto a key, so it reads the text unfolded.
        self.suffix_tries = (_suffix_trie(self.partials[False], {}), _suffix_trie(self.partials[True], _UNFOLD))
        self.word_start = frozenset(r for r, c in enumerate(rules) if c.rule.prefix() == r"\b")
        self.any_anchor = _any_anchor(anchors, self.word_start)
        self.lead_ins = {r: (c.span, c.rule.lead_in + max(map(len, c.anchors)) - 1)
                         for r, c in enumerate(rules) if c.rule.lead_in}
        shapes = set(self.lead_ins.values())  # a wider span and reach always start no later: keep the widest
        self.lead_in_shapes = [(s, r) for s, r in shapes
                               if not any(o != (s, r) and o[0] >= s and o[1] >= r for o in shapes)]

    def hold(self, text: str, matches: Matches) -> int:
        tail = text[-(self.max_span - 1) :] if self.max_span > 1 else ""
        n, wide = len(tail), text[-2 * self.max_span :]
        run = _run_before(tail, n, n)  # the trailing identifier run, measured once for every lead-in rule
        boundary = min([n, self._partial_start(tail, False), self._partial_start(tail, True),
                        *(_lead_in_start(n, span, reach, run) for span, reach in self.lead_in_shapes)])
        if self.any_anchor is None or not self.any_anchor.search(wide):
            return n - boundary  # no anchor: no candidate start and no match (every match holds an anchor)
        boundary = min(boundary, self._candidate_start(tail, tail.translate(FOLD), run))
        for finding, context in sorted(matches(wide), key=lambda m: -m[1]):
            start, end = context - len(wide) + n, finding.end - len(wide) + n  # relative to `tail`
            boundary = start if start < boundary < end else boundary
        return n - boundary

    def _partial_start(self, hay: str, fold: bool) -> int:
        """Where the earliest suffix of `hay` that cuts an anchor of this case mode short starts (len if none).

        Walks `hay` backwards through a trie of the reversed partials: a step per character the end of the text
        shares with some partial, usually one or two, instead of a lookup per possible length."""
        node: dict[str, Any] = self.suffix_tries[fold]
        n = len(hay)
        start = n
        for k in range(1, min(self.longest, n) + 1):
            child = node.get(hay[n - k])
            if child is None:
                break
            node = child
            if _END in node:
                start = n - k
        return start

    def _rule_start(self, r: int, hay: str, run: int) -> int:
        """The earliest start known for rule `r` before its anchors are looked at (its lead-in or partials)."""
        n = len(hay)
        if r in self.lead_ins:
            return _lead_in_start(n, *self.lead_ins[r], run)
        parts = self.rules[r].partials
        return next((n - k for k in range(min(self.longest, n), 0, -1) if hay[n - k :] in parts), n)

    def _candidate_start(self, tail: str, folded: str, run: int) -> int:
        n = len(tail)
        candidates: dict[Any, list[int]] = {}
        for fold, hay in ((False, tail), (True, folded)):
            present = set(hay).union(map(str.__add__, hay, hay[1:]))  # only anchors whose start occurs
            for key in present.intersection(self.windows[fold]):
                for anchor, window, rules in self.windows[fold][key]:
                    i = hay.find(anchor, max(0, n - window))
                    while i != -1:
                        # no match of a `\b` rule starts at an anchor glued to a word character before it
                        glued = i > 0 and hay[i - 1] in _WORD_CHARS
                        for r in rules:
                            if not (glued and r in self.word_start):
                                candidates.setdefault(r, []).append(i)
                        i = hay.find(anchor, i + 1)
        best = n
        for r, positions in candidates.items():
            c = self.rules[r]
            known = self._rule_start(r, folded if c.rule.ignore_case else tail, run)
            best = min(best, _earliest_start(c, tail, sorted(set(positions)), known))
        return best


def _any_anchor(anchors: dict[tuple[str, bool], list[int]], word_start: frozenset[int]) -> Any:
    """Every anchor where its rules could use it: a superset of what the candidates and the prefilter look
    for. Case-sensitive anchors are looked for as written, after a word boundary when all their rules start
    with one (a two-letter prefix inside a base64 run then wakes nothing up); the others in any case."""
    bounded = {a for (a, fold), rs in anchors.items() if not fold and all(r in word_start for r in rs)}
    exact = {a for (a, fold) in anchors if not fold} - bounded
    folded = {a for (a, fold) in anchors if fold}
    parts = [f"\\b(?:{_alternation(bounded)})" if bounded else "", _alternation(exact),
             f"(?i:{_alternation(folded)})" if folded else ""]
    return compile_re2("|".join(p for p in parts if p)) if anchors else None


_END = ""  # trie key marking that a partial ends at this node (characters are never empty)


def _suffix_trie(partials: dict[str, Any], unfold: dict[str, str]) -> dict[str, Any]:
    """Nested dicts keyed by the partials' characters from last to first; a character listed in `unfold`
    leads to the same node as the character it folds onto."""
    root: dict[str, Any] = {}
    for partial in partials:
        node = root
        for char in reversed(partial):
            child = node.setdefault(char, {})
            for other in unfold.get(char, ""):
                node[other] = child
            node = child
        node[_END] = True
    return root


_UNFOLD: dict[str, str] = {}  # folded character -> the other characters FOLD maps onto it
for _code, _target in FOLD.items():
    _UNFOLD[_target] = _UNFOLD.get(_target, "") + chr(_code)


def _lead_in_start(n: int, span: int, reach: int, run: int) -> int:
    """The end may be a lead-in rule's prefix, or that and part of its anchor."""
    return max(0, n - span + 1, n - min(run, reach))


def _earliest_start(c: Any, tail: str, positions: list[int], best: int) -> int:
    """The earliest start before `best` of a match that may run past the end, from its anchors' positions."""
    n, hit = len(tail), (-1, -1)  # hit: the first stop hit after the last candidate, (n + 1, n + 1) if none
    lo = max(0, n - (c.span - 1))
    for p in positions:
        if p - c.rule.lead_in >= best:  # a start before `best` is still possible while its lead-in reaches back
            break
        if p < lo:
            continue
        if c.stop is not None and hit[0] < p:
            hit = _stop_hit(c.stop, tail, p)
        s = max(lo, p - _run_before(tail, p, c.rule.lead_in))
        if (c.stop is None or hit[1] > n) and _lead_possible(c, tail, s, p):
            return s
    return best


def _stop_hit(stop: Any, tail: str, p: int) -> tuple[int, int]:
    if isinstance(stop, str):
        found = tail.find(stop, p)
        return (found, found + len(stop)) if found != -1 else (len(tail) + 1, len(tail) + 1)
    match = stop.search(tail[p:])  # a slice: the re2 wrapper re-encodes the whole string it is given
    return (p + match.start(), p + match.end()) if match else (len(tail) + 1, len(tail) + 1)


def _lead_possible(c: Any, tail: str, s: int, p: int) -> bool:
    """Whether a match from somewhere in `s..p` holds, or may still grow into, the start it needs (`lead`)."""
    if c.lead is None or c.lead.search(tail[s : p + c.lead_reach + 1]):
        return True
    if c.closure is not None:
        return c.closure[0].fullmatch(tail[p : p + c.closure[1] + 1]) is not None
    return len(tail) - p <= c.lead_reach


def _run_before(text: str, index: int, limit: int) -> int:  # identifier characters (<= limit) ending there
    piece = text[max(0, index - limit) : index]
    return len(piece) - len(piece.rstrip(_IDENT))

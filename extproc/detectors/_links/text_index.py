"""`Index`, position indexes over one text, and `Hit`, one finding before it becomes a `Finding`."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import cache

from extproc.detectors.patterns import compile_re2

SPACES = frozenset(" \t\n\f\r")
_CONTROLS = frozenset(map(chr, [*range(0x20), 0x7F]))

# Runs of one character class: tag names, spaces, unquoted values, URLs; each as a regular expression for
# long runs and as a test of one character for short ones.
_RUN_CLASSES = {
    "name": compile_re2(r"[^\s/>]*"),  # HTML tag name
    "ws": compile_re2(r"\s*"),
    "unquoted": compile_re2(r"[^\s>]*"),  # unquoted attribute value
    "url": compile_re2(r"[^\s<>\"'`\[\]\x00-\x1f\x7f]*"),  # bare URL (GitHub autolink characters, roughly)
    "autolink": compile_re2(r"[^\s<>\x00-\x1f\x7f]*"),
}
_RUN_TEST = {
    "name": lambda c: c not in SPACES and c not in "/>",
    "ws": SPACES.__contains__,
    "unquoted": lambda c: c not in SPACES and c != ">",
    "url": lambda c: c not in SPACES and c not in "<>\"'`[]" and c not in _CONTROLS,
    "autolink": lambda c: c not in SPACES and c not in "<>" and c not in _CONTROLS,
}


@dataclass(slots=True)
class Hit:
    start: int
    end: int
    label: str
    kind: str  # image | link | def | tail | autolink | html | pair | bare
    inner: tuple[int, int] | None = None  # readable text kept by the replacement
    replacement: str = ""


@cache
def _closing_re(name: str):  # type: ignore[no-untyped-def]
    """`</name` as HTML ends an element (only container names and `a` are asked for)."""
    return compile_re2(f"(?i)</{name}[\\s/>]")


class Index:
    """Position indexes over one text, built on first use, shared by the passes of one `find` or `hold`: every
    construct is evaluated from each of its possible starts without rescanning the text after it."""

    __slots__ = ("_chars", "_closers", "_pairs", "_runs", "_tag_memo", "angle_memo", "n", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self._chars: dict[str, list[int]] = {}
        self._runs: dict[str, tuple[int, int]] = {}  # the last run found of each class
        self._tag_memo: dict[int, int | None] = {}
        self._pairs: dict[int, int] | None = None
        self._closers: dict[str, list[int]] = {}
        self.angle_memo: dict[int, bool] = {}  # hold: is the `<` at this position open

    def positions(self, char: str) -> list[int]:
        """Every index holding `char`, ascending."""
        positions = self._chars.get(char)
        if positions is None:
            positions, text, at = [], self.text, self.text.find(char)
            while at >= 0:
                positions.append(at)
                at = text.find(char, at + 1)
            self._chars[char] = positions
        return positions

    def next_char(self, char: str, pos: int) -> int:
        """First index >= pos holding `char`, or len(text)."""
        positions = self.positions(char)
        index = bisect_left(positions, pos)
        return positions[index] if index < len(positions) else self.n

    def run_end(self, kind: str, pos: int) -> int:
        """End of the run of `kind` characters starting at `pos` (`pos` itself if there is none).

        Starts inside the last run found share its end, so many starts inside one long run cost one scan."""
        start, end = self._runs.get(kind, (0, -1))
        if start <= pos < end:
            return end
        text, inside, found = self.text, _RUN_TEST[kind], pos
        limit = min(self.n, pos + 16)
        while found < limit and inside(text[found]):
            found += 1
        if found < limit or found == self.n:
            return found  # short runs (most of them) without a regular expression call
        pattern, size = _RUN_CLASSES[kind], 64
        while True:
            found = pos + len(pattern.match(self.text[pos : pos + size]).group())
            if found < pos + size or found >= self.n:
                break
            size *= 4
        if found > pos:
            self._runs[kind] = (pos, found)
        return found

    def pairs(self) -> dict[int, int]:
        """Each `]` to its `[` and each `[` to its `]` (nearest balanced pair)."""
        if self._pairs is None:
            self._pairs, stack, text = {}, [], self.text
            for position in sorted(self.positions("[") + self.positions("]")):
                if text[position] == "[":
                    stack.append(position)
                elif stack:
                    opener = stack.pop()
                    self._pairs[position] = opener
                    self._pairs[opener] = position
        return self._pairs

    def tag_end(self, s: int) -> int | None:
        """Index of the `>` closing the tag at `s` (`<` and a letter), or None if it is still open at the end.

        The HTML tokenizer: the name runs to a space, `/` or `>`; after it a quote opens a value only
        right after `=` (and spaces), and `>` ends the tag anywhere outside a value. What follows an `=`
        seen outside a value is the same whichever tag start led there, so it is worked out once."""
        memo = self._tag_memo
        pos: int | None = self.run_end("name", s + 1)
        pending: list[int] = []
        result: int | None = None
        while pos is not None:
            close, eq = self.next_char(">", pos), self.next_char("=", pos)
            if close < eq:
                result = close
                break
            if eq >= self.n:
                break
            if eq in memo:
                result = memo[eq]
                break
            pending.append(eq)
            result, pos = self._after_equals(eq)
        for eq in pending:
            memo[eq] = result
        return result

    def _after_equals(self, eq: int) -> tuple[int | None, int | None]:
        """Past the value after an `=` outside a value: (the `>` ending the tag, None), (None, None) if the
        text ends first, or (None, where to look on)."""
        text, n = self.text, self.n
        value = self.run_end("ws", eq + 1)
        if value >= n:
            return None, None
        char = text[value]
        if char == ">":
            return value, None
        if char in "\"'":
            quote = self.next_char(char, value + 1)
            return (None, None) if quote >= n else (None, quote + 1)
        after = self.run_end("unquoted", value)
        if after >= n:
            return None, None
        if text[after] == ">":
            return after, None
        return None, after

    def closing(self, name: str, after: int, bound: int) -> tuple[int, int] | None:
        """(start, end) of the first `</name` closing tag at or after `after`, if it ends by `bound`."""
        starts = self._closers.get(name)
        if starts is None:
            starts = self._closers[name] = [m.start() for m in _closing_re(name).finditer(self.text)]
        index = bisect_left(starts, after)
        if index == len(starts) or starts[index] >= bound:
            return None
        close_end = self.text.find(">", starts[index], bound)
        return (starts[index], close_end + 1) if close_end >= 0 else None

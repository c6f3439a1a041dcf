"""One normalisation step before every detector, so rewriting how text is spelled does not hide it.

`normalize(text)` folds each character on its own (look-alike letters to ASCII, NFKC, invisible and tag
characters removed) into 0, 1 or more characters, so any span of `Normalized.text` maps back to an exact span
of the original (`to_original`) for redaction; a letter and a separate combining mark are not composed.
Embedded base64, percent-encoded, hex and tag-character text is decoded into `Decoded` segments (one nesting
level); a finding in a segment maps to the whole encoded span. A per-request `Budget` bounds the work.
"""

from __future__ import annotations

import base64
import dataclasses
import operator
import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, compress, count, pairwise
from urllib.parse import unquote

from extproc.confusables import BASE64_CLASS, CONFUSABLES, INVISIBLE, PERCENT_CLASS, TAGS
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding

_CLEANUP = {**dict.fromkeys(map(ord, INVISIBLE)), **CONFUSABLES}
_ASCII_BYTES = bytes(range(128))
_TAG_ASCII = {**dict.fromkeys(map(ord, INVISIBLE)), **{cp: cp - 0xE0000 for cp in range(0xE0020, 0xE007F)}}
_CACHE_LIMIT = 1 << 16  # distinct characters remembered; hostile text cannot grow the cache past it
_REPLACE_LIMIT = 64  # up to this many distinct changed characters, chained str.replace beats translate
_fold_cache: dict[str, str] = {}
# Invisible characters, and letters that fold although NFKC keeps them: a text without any needs no work.
_ALWAYS_FOLDED_RE = compile_re2(
    "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted({*map(ord, INVISIBLE), *CONFUSABLES})) + "]")
_MIN_BASE64, _MIN_HEX, _MIN_ESCAPES = 16, 32, 3
_RUN, _ESCAPE = b"a" * _MIN_BASE64, b"%hh"
_URLSAFE = str.maketrans("-_", "+/")


@dataclass(slots=True)
class Budget:
    """Decoding work allowed for one request, shared by its `normalize` calls; once exhausted, it stays so."""

    max_chars_decoded: int = 65_536
    max_segments: int = 64
    max_attempts: int = 1_024  # candidate runs handed to a decoder (their length counts as chars)
    chars_decoded: int = 0
    segments: int = 0
    attempts: int = 0
    exhausted: bool = False

    def spend(self, attempts: int = 0, chars: int = 0, segments: int = 0) -> bool:
        """Take the work from the budget; False, and exhausted for good, if it does not fit."""
        self.exhausted = self.exhausted or (
            self.attempts + attempts > self.max_attempts or self.segments + segments > self.max_segments
            or self.chars_decoded + chars > self.max_chars_decoded)
        if not self.exhausted:
            self.attempts, self.chars_decoded, self.segments = (
                self.attempts + attempts, self.chars_decoded + chars, self.segments + segments)
        return not self.exhausted


@dataclass(frozen=True, slots=True)
class Decoded:
    """Normalised text decoded from `original[original_start:original_end]`."""

    text: str
    original_start: int
    original_end: int
    kind: str = ""  # base64 | hex | url | tag


# Removed or expanded characters: where each one's output starts in the normalised text, its original offset
# and its output width; everything between them is 1:1.
_Pieces = tuple[list[int], list[int], list[int]]
# Folded text, its offset map (None: the identity) and the (start, end, ASCII text) of its tag-character runs.
_Folded = tuple[str, _Pieces | None, Iterable[tuple[int, int, str]]]


class Normalized:
    """What detectors see (`text`, `decoded`) and the way back to the original offsets."""

    __slots__ = ("_pieces", "_size", "budget_exhausted", "decoded", "text")

    def __init__(self, text: str, original_size: int, pieces: _Pieces | None) -> None:
        self.text = text
        self.decoded: list[Decoded] = []
        self.budget_exhausted = False  # this call skipped decoding because the budget ran out
        self._size = original_size
        self._pieces = pieces

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original span whose characters fold into `text[start:end]` (monotone in both ends)."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(f"span ({start}, {end}) is outside the normalised text")
        if self._pieces is None:
            return start, end
        if start == end:
            at = self._size if start == len(self.text) else self._origin(start)
            return at, at
        return self._origin(start), self._origin(end - 1) + 1

    def _origin(self, index: int) -> int:
        """Original offset of the character that produced `text[index]`."""
        starts, positions, widths = self._pieces  # type: ignore[misc]
        k = bisect_right(starts, index) - 1  # the last removed or expanded character at or before `index`
        if k < 0:
            return index
        past = index - starts[k] - widths[k]
        return positions[k] if past < 0 else positions[k] + 1 + past


def normalize(text: str, budget: Budget | None = None) -> Normalized:
    """Fold `text` for detectors and decode its embedded encoded segments within `budget`."""
    folded = _fold(text)
    result = Normalized(folded[0], len(text), folded[1])
    _decode_layer(result, folded, budget if budget is not None else Budget(), outer=None)
    return result


def scan_normalized(
    detector_find: Callable[[str], list[Finding]], text: str, budget: Budget | None = None
) -> list[Finding]:
    """`detector_find` over the normalised text and each decoded segment, in original offsets, deduplicated.

    A finding in a decoded segment covers its whole encoded span."""
    norm = normalize(text, budget)
    scans = [(norm.text, None)] + [(d.text, (d.original_start, d.original_end)) for d in norm.decoded]
    best: dict[tuple[str, str, int, int], Finding] = {}
    for scanned, whole in scans:
        for finding in detector_find(scanned):
            start, end = whole or norm.to_original(finding.start, finding.end)
            key = (finding.detector, finding.label, start, end)
            if key not in best or best[key].score < finding.score:
                best[key] = dataclasses.replace(finding, start=start, end=end)
    return sorted(best.values(), key=lambda f: (f.start, f.end, f.label))


def fold_char(char: str) -> str:
    """What one character becomes: confusable letters to ASCII, NFKC, invisible characters removed."""
    out = _fold_cache.get(char)
    if out is None:
        # Confusables go first as well as last: NFKC turns some look-alikes (lunate sigma) into other letters.
        out = unicodedata.normalize("NFKC", char.translate(CONFUSABLES)).translate(_CLEANUP)
        if len(_fold_cache) < _CACHE_LIMIT:
            _fold_cache[char] = out
    return out


def _fold(text: str) -> _Folded:
    if text.isascii():
        return text, None, []
    # Only non-ASCII characters can change: UTF-8 minus its ASCII bytes is exactly those (surrogatepass: JSON
    # can carry lone surrogates).
    non_ascii = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
    if unicodedata.is_normalized("NFKC", text) and not _ALWAYS_FOLDED_RE.search(non_ascii):
        return text, None, []
    changes = _changes(non_ascii.decode("utf-8", "surrogatepass"))
    if len(changes) <= _REPLACE_LIMIT:
        folded = text
        for char, out in changes.items():  # any order: folded characters fold to themselves
            folded = folded.replace(char, out)
    else:
        folded = text.translate({ord(c): c for c in set(text)} | {ord(c): out for c, out in changes.items()})
    resized = [c for c, out in changes.items() if len(out) != 1]
    if not resized:
        return folded, None, []
    invisible = [c for c in resized if c in INVISIBLE]
    tags = _tag_runs(text, _positions(text, invisible, changes)[0]) if not TAGS.isdisjoint(invisible) else ()
    return folded, _pieces(*_positions(text, resized, changes)), tags


def _changes(chars: str) -> dict[str, str]:
    """{character: folded} for the distinct characters of `chars` that fold to something else."""
    changes: dict[str, str] = {}
    for _ in range(_REPLACE_LIMIT):  # peeling characters off is faster than set() for typical prose
        if not chars:
            return changes
        char = chars[0]
        if (out := fold_char(char)) != char:
            changes[char] = out
        chars = chars.replace(char, "")
    return changes | {c: out for c in set(chars) if (out := fold_char(c)) != c}


# The next three keep their per-character work in C (split, map, accumulate): hostile text can hold a
# million removed characters.
def _positions(text: str, chars: list[str], changes: dict[str, str]) -> tuple[list[int], list[int]]:
    """Sorted offsets of every occurrence of `chars` in `text`, and the folded width of each."""
    found: list[int] = []
    widths: list[int] = []
    for char in chars:
        offsets = list(accumulate(map((1).__add__, map(len, text.split(char))), initial=-1))[1:-1]
        found += offsets
        widths += [len(changes[char])] * len(offsets)
    order = sorted(range(len(found)), key=found.__getitem__)
    return list(map(found.__getitem__, order)), list(map(widths.__getitem__, order))


def _pieces(positions: list[int], widths: list[int]) -> _Pieces:
    shifts = accumulate(map((-1).__add__, widths), initial=0)  # output minus input length so far
    return list(map(operator.add, positions, shifts)), positions, widths


def _tag_runs(text: str, positions: list[int]) -> Iterator[tuple[int, int, str]]:
    """Runs of adjacent invisible characters (at `positions`) that carry ASCII in tag characters."""
    gaps = map(operator.sub, positions[1:], positions)
    breaks = [0, *compress(count(1), map((1).__ne__, gaps)), len(positions)]
    for first, last in pairwise(breaks):
        start, end = positions[first], positions[last - 1] + 1
        if smuggled := text[start:end].translate(_TAG_ASCII):
            yield start, end, smuggled


def _decode_layer(result: Normalized, folded: _Folded, budget: Budget, outer: tuple[int, int] | None) -> None:
    """Decode what is embedded in `folded`; `outer` is the original encoded span if `folded` was decoded."""
    text, _, tags = folded
    for start, end, ascii_text in tags:
        if not _add_segment(result, "tag", ascii_text, outer or (start, end), budget, outer):
            return
    for kind, start, end in _candidates(text):
        if not budget.spend(attempts=1, chars=end - start):
            result.budget_exhausted = True
            return
        decoded = _decode(kind, text[start:end]) if kind else None
        span = outer or result.to_original(start, end)
        if decoded and not _add_segment(result, kind, decoded, span, budget, outer):
            return


def _add_segment(result: Normalized, kind: str, text: str, span: tuple[int, int], budget: Budget,
                 outer: tuple[int, int] | None) -> bool:
    """Record a decoded segment and, unless it is already nested, what is encoded inside it."""
    if not budget.spend(segments=1):
        result.budget_exhausted = True
        return False
    inner = _fold(text)
    result.decoded.append(Decoded(inner[0], span[0], span[1], kind))
    if outer is None:
        _decode_layer(result, inner, budget, outer=span)
    return not result.budget_exhausted


def _candidates(text: str) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) of runs that look encoded; kind "" marks a run that only costs an attempt."""
    ascii_bytes = text.encode("ascii", "replace")  # one byte per character keeps offsets aligned
    yield from _base64_runs(text, ascii_bytes.translate(BASE64_CLASS))
    if text.count("%") >= _MIN_ESCAPES:
        yield from _percent_runs(ascii_bytes.translate(PERCENT_CLASS))


def _base64_runs(text: str, classes: bytes) -> Iterator[tuple[str, int, int]]:
    pos = 0
    while (start := classes.find(_RUN, pos)) >= 0:
        pos = classes.find(b" ", start + _MIN_BASE64)
        pos = len(classes) if pos < 0 else pos
        padding = text[pos : pos + 2]
        if kind := _run_kind(text[start:pos]):
            yield kind, start, pos + len(padding) - len(padding.lstrip("="))


def _run_kind(body: str) -> str | None:
    digits = body[2:] if body[:2] in ("0x", "0X") else body
    if len(digits) >= _MIN_HEX and len(digits) % 2 == 0 and not digits.strip(string.hexdigits):
        return "hex"
    # Single-case words, identifiers and numbers are common in prose and code and are never base64 text.
    mixed_alphabets = ("+" in body or "/" in body) and ("-" in body or "_" in body)
    return None if mixed_alphabets or body.isdigit() or body.islower() or body.isupper() else "base64"


def _percent_runs(classes: bytes) -> Iterator[tuple[str, int, int]]:
    """Whitespace-delimited runs containing a %XX escape; those with fewer than three are not decoded."""
    pos = 0
    while (hit := classes.find(_ESCAPE, pos)) >= 0:
        start = max(pos, classes.rfind(b" ", pos, hit) + 1)
        pos = classes.find(b" ", hit)
        pos = len(classes) if pos < 0 else pos
        yield ("url" if classes.count(_ESCAPE, start, pos) >= _MIN_ESCAPES else ""), start, pos


def _decode(kind: str, encoded: str) -> str | None:
    """The decoded text if it decodes and at most a tenth of it is unprintable or undecodable."""
    try:
        if kind == "url":
            text = unquote(encoded, errors="replace")
        elif kind == "hex":
            text = bytes.fromhex(encoded.removeprefix("0x").removeprefix("0X")).decode("utf-8", "replace")
        else:
            body = encoded.rstrip("=").translate(_URLSAFE)
            text = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("utf-8", "replace")
    except ValueError:  # binascii.Error included
        return None
    bad = text.count("\ufffd") + (
        0 if text.isprintable() else sum(1 for c in text if not c.isprintable() and c not in "\t\n\r"))
    return text if text and bad * 10 <= len(text) else None


def fold(text: str) -> Normalized:
    """Only the per-character folding (no decoding): what the streaming hold-back is computed on."""
    folded = _fold(text)
    return Normalized(folded[0], len(text), folded[1])

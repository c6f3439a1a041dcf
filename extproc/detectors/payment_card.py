"""Payment card numbers (PANs): 12-19 digits, optionally grouped by spaces or dashes, Luhn-valid, with the
issuer prefix (IIN) and length of a known scheme.

    detector: payment_card

Groups must look like a printed card: one block, blocks of four (the last may be shorter), or the 4-6-5 /
4-6-4 layout of Amex and Diners; one kind of separator throughout.
"""

from __future__ import annotations

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

# Digit groups joined by single separators, holding at least `_MIN_DIGITS` digits: shorter runs hold no card.
_RUN = compile_re2(r"\d(?:[ -]?\d){11,}")
_RUN_CHARS = frozenset("0123456789 -")

# (scheme, IIN prefix range low-high inclusive, compared on the first len(low) digits, allowed lengths)
_SCHEMES: list[tuple[str, str, str, range | tuple[int, ...]]] = [
    ("visa", "4", "4", (13, 16, 19)),
    ("mastercard", "51", "55", (16,)),
    ("mastercard", "2221", "2720", (16,)),
    ("amex", "34", "34", (15,)),
    ("amex", "37", "37", (15,)),
    ("discover", "6011", "6011", range(16, 20)),
    ("discover", "644", "649", range(16, 20)),
    ("discover", "65", "65", range(16, 20)),
    ("jcb", "3528", "3589", range(16, 20)),
    ("jcb", "2131", "2131", (15,)),
    ("jcb", "1800", "1800", (15,)),
    ("diners", "300", "305", range(14, 20)),
    ("diners", "3095", "3095", range(14, 20)),
    ("diners", "36", "36", range(14, 20)),
    ("diners", "38", "39", range(14, 20)),
    ("unionpay", "62", "62", range(16, 20)),
    ("unionpay", "81", "81", range(16, 20)),
    ("maestro", "50", "50", range(12, 20)),
    ("maestro", "56", "58", range(12, 20)),
    ("maestro", "6304", "6304", range(12, 20)),
    ("maestro", "67", "67", range(12, 20)),
    ("maestro", "639", "639", range(12, 20)),
]
_MIN_DIGITS, _MAX_DIGITS = 12, 19


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def scheme_of(digits: str) -> str | None:
    """The card scheme whose IIN range and length fit `digits`, or None."""
    for scheme, low, high, lengths in _SCHEMES:
        if len(digits) in lengths and low <= digits[:len(low)] <= high:
            return scheme
    return None


def _grouping_ok(groups: list[str]) -> bool:
    sizes = [len(group) for group in groups]
    if len(sizes) == 1:
        return True
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


@register
class PaymentCardDetector(Detector):
    name = "payment_card"
    owasp = ("LLM02:2025", "LLM02:2026")
    max_span = 23  # 19 digits printed as 4-4-4-4-3

    def find(self, text: str) -> list[Finding]:
        findings = []
        for offset, run_end in match_spans(_RUN, text):
            if not _standalone(text, offset, run_end):
                continue
            for start, end in _cards(text[offset:run_end]):
                findings.append(Finding(self.name, "payment_card", offset + start, offset + end))
        return findings

    def hold(self, text: str) -> int:
        return hold_run(text, _RUN_CHARS, self.max_span)


def _standalone(text: str, start: int, end: int) -> bool:
    """Digits glued to letters (hex, identifiers) or to a decimal point are part of another token."""
    before = text[max(0, start - 2):start].rjust(2)
    after = text[end:end + 2].ljust(2)
    glued = before[1].isalnum() or before[1] == "_" or after[0].isalnum() or after[0] == "_"
    decimal = (before[1] == "." and before[0].isdigit()) or (after[0] == "." and after[1].isdigit())
    return not (glued or decimal)


def _cards(run: str) -> list[tuple[int, int]]:
    """Cards inside a run of digit groups: the longest valid stretch of whole groups, left to right."""
    groups, offsets, pos = [], [], 0
    for group in run.replace("-", " ").split(" "):
        groups.append(group)
        offsets.append(pos)
        pos += len(group) + 1
    found, first = [], 0
    while first < len(groups):
        last = _longest_card(run, groups, offsets, first)
        if last is None:
            first += 1
            continue
        found.append((offsets[first], offsets[last] + len(groups[last])))
        first = last + 1
    return found


def _longest_card(run: str, groups: list[str], offsets: list[int], first: int) -> int | None:
    if len(groups[first]) != 4 and not _MIN_DIGITS <= len(groups[first]) <= _MAX_DIGITS:
        return None  # a card of several groups starts with four digits (`_grouping_ok`); one of one is long
    digits = ""
    candidates = []
    for last in range(first, len(groups)):
        digits += groups[last]
        if len(digits) > _MAX_DIGITS:
            break
        if len(digits) >= _MIN_DIGITS:
            candidates.append((last, digits))
    for last, digits in reversed(candidates):
        span = run[offsets[first]:offsets[last] + len(groups[last])]
        if (" " in span and "-" in span) or not _grouping_ok(groups[first:last + 1]):
            continue
        if scheme_of(digits) and luhn_valid(digits):
            return last
    return None

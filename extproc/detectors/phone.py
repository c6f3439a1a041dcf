"""Phone numbers: RE2 finds runs of digits and phone punctuation, libphonenumber decides which are numbers.

    detector: phone
    params:
      regions: [US, GB, DE, FR, IN]   # how to read numbers written without +country code

A run is handed to libphonenumber's matcher at `VALID` leniency for each region: the number must be valid
for its country (`is_valid_number`) and written the way that country writes it (a national number without
its required trunk prefix, or a date or time, is not a phone number). Numbers with `+` or an international
call prefix (00, 011) are read whatever the region.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import CountryCodeSource, Leniency, PhoneNumberMatcher
from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding

_SEPARATORS = " \u00a0-./()"
_RUN = compile_re2(r"\+?\(?\d(?:[\d \x{00A0}\-./()]*\d)?(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?")
_RUN_CHARS = frozenset("0123456789+#ext" + _SEPARATORS)
_MIN_DIGITS, _MAX_DIGITS = 6, 18
_TOKEN = compile_re2(r"[^ \x{00A0}]+")
_MAX_SPLIT_TOKENS, _MAX_NUMBER_TOKENS = 12, 6
# Shapes that libphonenumber may accept as a national number but that are something else in text.
_DATE = compile_re2(r"(?:19|20)\d\d[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:19|20)\d\d")
_DOTTED = compile_re2(r"\d+(?:\.\d+)+")
_SSN_SHAPE = compile_re2(r"\d{3}-\d{2}-\d{4}")


class PhoneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regions: list[str] = Field(default_factory=lambda: ["US", "GB", "DE", "FR", "IN"], min_length=1)

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        regions = [region.upper() for region in value]
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown region(s) {unknown}; use ISO 3166-1 alpha-2 codes such as US, GB, DE")
        return regions


@register
class PhoneDetector(Detector):
    name = "phone"
    owasp = ("LLM02:2025", "LLM02:2026")
    Params = PhoneParams
    max_span = 48  # 15 digits (E.164) after an international prefix, punctuation and an extension

    def find(self, text: str) -> list[Finding]:
        findings = []
        for match in _RUN.finditer(text):
            start, end = match.span()
            if not _standalone(text, start, end) or sum(c.isdigit() for c in match.group()) < _MIN_DIGITS:
                continue
            for first, last in self._numbers(match.group()):
                findings.append(Finding(self.name, "phone_number", start + first, start + last))
        return findings

    def hold(self, text: str) -> int:
        return hold_run(text, _RUN_CHARS, self.max_span)

    def _numbers(self, run: str) -> list[tuple[int, int]]:
        spans = self._matched(run)
        tokens = [token.span() for token in _TOKEN.finditer(run)]
        if len(tokens) <= _MAX_SPLIT_TOKENS:
            spans |= self._split(run, tokens, spans)
        return _disjoint(spans)

    def _matched(self, run: str) -> set[tuple[int, int]]:
        spans: set[tuple[int, int]] = set()
        masked = _look_alikes(run)
        for region in self.params.regions:
            for match in PhoneNumberMatcher(run, region, leniency=Leniency.VALID):
                span = (match.start, match.end)
                if (span not in spans and match.end - match.start <= self.max_span
                        and _plausible(region, run, span)
                        and not any(s < match.end and match.start < e for s, e in masked)):
                    spans.add(span)
        return spans

    def _split(self, run: str, tokens: list[tuple[int, int]],
               found: set[tuple[int, int]]) -> set[tuple[int, int]]:
        """The matcher reads `030 1234567 089 7654321` as one invalid number. Cut the run at spaces into the
        numbers that cover the most tokens, each starting where a written number typically starts (a trunk
        prefix, `+` or `(`), which keeps this affordable on runs of unrelated numbers."""
        best: list[tuple[int, int, int]] = [(0, 0, 0)] * (len(tokens) + 1)  # (tokens covered, -numbers, end)
        for first in range(len(tokens) - 1, -1, -1):
            best[first] = (best[first + 1][0], best[first + 1][1], first)
            for last in range(first, min(len(tokens), first + _MAX_NUMBER_TOKENS)):
                covered = last - first + 1 + best[last + 1][0]
                option = (covered, best[last + 1][1] - 1, last + 1)
                start, end = tokens[first][0], tokens[last][1]
                if option[:2] > best[first][:2] and self._window_ok(run, start, end, found):
                    best[first] = option
        spans, first = set(), 0
        while first < len(tokens):
            end = best[first][2]
            if end > first:
                spans.add((tokens[first][0], tokens[end - 1][1]))
                first = end
            else:
                first += 1
        return spans

    def _window_ok(self, run: str, start: int, end: int, found: set[tuple[int, int]]) -> bool:
        digits = sum(char.isdigit() for char in run[start:end])
        return (run[start] in "0+(" and _MIN_DIGITS <= digits <= _MAX_DIGITS
                and not any(s < end and start < e for s, e in found) and not _after_country_code(run[:start])
                and (0, end - start) in self._matched(run[start:end]))


def _plausible(region: str, run: str, span: tuple[int, int]) -> bool:
    candidate = run[span[0]:span[1]]
    if _SSN_SHAPE.fullmatch(candidate):
        return False
    try:  # the matcher's number forgets how it was written; parse again keeping that
        number = phonenumbers.parse(candidate, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    source = number.country_code_source
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if source == CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN:
        # `1 425 ...` in North America is the trunk prefix; `49 30 ...` elsewhere is a bare number.
        return str(number.country_code) == metadata.national_prefix
    if source == CountryCodeSource.FROM_DEFAULT_COUNTRY:
        return not _after_country_code(run[:span[0]]) and _trunk_prefix_ok(number, metadata)
    return True


def _after_country_code(before: str) -> bool:
    """`+41 (0)96 ...`: the national number of an international one is not a number of its own."""
    token = before.rstrip(" \u00a0-.(").rsplit(maxsplit=1)[-1:] or [""]
    return token[0].startswith("+") and token[0][1:].isdigit()


def _trunk_prefix_ok(number: phonenumbers.PhoneNumber, metadata: phonenumbers.PhoneMetadata) -> bool:
    """libphonenumber only asks for the trunk prefix when it has a formatting rule for the number; without
    one (fringe ranges) a national number must still be written with it."""
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    nsn = phonenumbers.national_significant_number(number)
    prefix = metadata.national_prefix
    if not prefix or national.replace(" ", "") != nsn:
        return True
    return phonenumbers.normalize_digits_only(number.raw_input).startswith(prefix)


def _look_alikes(run: str) -> list[tuple[int, int]]:
    spans = [match.span() for match in _DATE.finditer(run)]
    for match in _DOTTED.finditer(run):
        groups = match.group().split(".")
        if len(groups) == 4 and all(len(g) <= 3 and int(g) <= 255 for g in groups):
            spans.append(match.span())  # an IPv4 address
    return spans


def _standalone(text: str, start: int, end: int) -> bool:
    """A run glued to letters (`ID12345678`, hex, UUID fragments) is part of some other token; one right
    after `12:` continues a clock time (`01:10:16 2026 -0600` in a git log)."""
    before = text[max(0, start - 2):start].rjust(2)
    after = text[end] if end < len(text) else " "
    if before[1] == ":" and before[0].isdigit():
        return False
    return not (before[1].isalnum() or before[1] == "_" or after.isalnum() or after == "_")


def _disjoint(spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Regions may read one run differently: keep the earliest, then longest, of overlapping numbers."""
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end))
    return kept

"""Phone numbers: RE2 finds runs of digits and phone punctuation, libphonenumber decides which are numbers.

    detector: phone
    params:
      regions: [US, GB, DE, FR, IN]   # how to read numbers written without +country code

A run is handed to libphonenumber's matcher at `VALID` leniency for each region: the number must be valid
for its country (`is_valid_number`) and written the way that country writes it (a national number without
its required trunk prefix, or a date or time, is not a phone number). Numbers with `+` or an international
call prefix (00, 011) are read whatever the region.

libphonenumber costs some 15-40 µs per parse, and reading a run for one region parses it once per digit
group, so each `find` has a work allowance (384 parses, plus one per 96 characters). Runs beyond it are
judged by shape alone and reported when they hold enough digits and are no date, dotted or SSN-shaped
number: text packed with digit groups is redacted rather than left unchecked, in time linear in its length.
Such findings score 0.5 (a rule with `min_score` above that ignores them).
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import CountryCodeSource, Leniency, PhoneNumberMatcher
from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.detectors import register
from extproc.detectors._allowance import Allowance
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

_SEPARATORS = " \u00a0-./()"
_RUN_CLASS = r"[\d \x{00A0}\-./()]"
# A maximal run of digits and phone punctuation holding at least `_MIN_DIGITS` digits: shorter runs never
# reach Python.
_RUN = compile_re2(rf"\+?\(?\d(?:{_RUN_CLASS}*\d){{5}}(?:{_RUN_CLASS}*\d)?(?:[ ]?(?:x|ext\.?|#)[ ]?\d{{1,6}})?")
_RUN_CHARS = frozenset("0123456789+#ext" + _SEPARATORS)
_MIN_DIGITS, _MAX_DIGITS = 6, 18  # `_RUN` spells the minimum out
_TOKEN = compile_re2(r"[^ \x{00A0}]+")
_MAX_SPLIT_TOKENS, _MAX_NUMBER_TOKENS = 12, 6
# Shapes that libphonenumber may accept as a national number but that are something else in text.
_DATE = compile_re2(r"(?:19|20)\d\d[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:19|20)\d\d")
_DOTTED = compile_re2(r"\d+(?:\.\d+)+")
_SSN_SHAPE = compile_re2(r"\d{3}-\d{2}-\d{4}")
# A unit: one parse by the matcher, some 15-40 µs. A matcher pass over a run parses it, then tries the
# numbers inside it group by group: one unit per digit group, plus one, plus one per 16 characters scanned.
_BASE_UNITS, _CHARS_PER_UNIT = 384, 96
_GROUPS = str.maketrans(dict.fromkeys(_SEPARATORS + "+#ext", " "))
_SHAPE_ONLY_SCORE = 0.5


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
        allowance = Allowance(len(text), _BASE_UNITS, _CHARS_PER_UNIT)
        for start, end in match_spans(_RUN, text):
            if not _standalone(text, start, end):
                continue
            run = text[start:end]
            numbers = self._numbers(run, allowance)
            score = 1.0 if numbers is not None else _SHAPE_ONLY_SCORE
            for first, last in numbers if numbers is not None else _by_shape(run):
                findings.append(Finding(self.name, "phone_number", start + first, start + last, score))
        return findings

    def hold(self, text: str) -> int:
        return hold_run(text, _RUN_CHARS, self.max_span)

    def _numbers(self, run: str, allowance: Allowance) -> list[tuple[int, int]] | None:
        """The numbers in `run`, or None when the allowance cannot pay for reading it."""
        spans = self._matched(run, allowance)
        if spans is None:
            return None
        tokens = [token.span() for token in _TOKEN.finditer(run)]
        if len(tokens) <= _MAX_SPLIT_TOKENS:
            split = self._split(run, tokens, spans, allowance)
            if split is None:
                return None
            spans |= split
        return _disjoint(spans)

    def _matched(self, run: str, allowance: Allowance) -> set[tuple[int, int]] | None:
        spans: set[tuple[int, int]] = set()
        masked: list[tuple[int, int]] | None = None
        for region in self.params.regions:
            if (0, len(run)) in spans:
                break  # a number filling the run leaves another region's reading nothing to add
            if not allowance.spend(1 + len(run.translate(_GROUPS).split()) + len(run) // 16):
                return None
            masked = _look_alikes(run) if masked is None else masked
            for match in PhoneNumberMatcher(run, region, leniency=Leniency.VALID):
                span = (match.start, match.end)
                if (span not in spans and match.end - match.start <= self.max_span
                        and _plausible(region, run, span)
                        and not any(s < match.end and match.start < e for s, e in masked)):
                    spans.add(span)
        return spans

    def _split(self, run: str, tokens: list[tuple[int, int]], found: set[tuple[int, int]],
               allowance: Allowance) -> set[tuple[int, int]] | None:
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
                if option[:2] <= best[first][:2]:
                    continue
                fits = self._window_ok(run, start, end, found, allowance)
                if fits is None:
                    return None
                if fits:
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

    def _window_ok(self, run: str, start: int, end: int, found: set[tuple[int, int]],
                   allowance: Allowance) -> bool | None:
        digits = sum(char.isdigit() for char in run[start:end])
        if not (run[start] in "0+(" and _MIN_DIGITS <= digits <= _MAX_DIGITS
                and not any(s < end and start < e for s, e in found) and not _after_country_code(run[:start])):
            return False
        matched = self._matched(run[start:end], allowance)
        return None if matched is None else (0, end - start) in matched


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
    if metadata is None:  # a region libphonenumber has no data for: nothing says the number is wrong
        return True
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
    return phonenumbers.normalize_digits_only(number.raw_input or "").startswith(prefix)


def _look_alikes(run: str) -> list[tuple[int, int]]:
    spans = [match.span() for match in _DATE.finditer(run)]
    for match in _DOTTED.finditer(run):
        groups = match.group().split(".")
        if len(groups) == 4 and all(len(g) <= 3 and int(g) <= 255 for g in groups):
            spans.append(match.span())  # an IPv4 address
    return spans


def _by_shape(run: str) -> list[tuple[int, int]]:
    """A run the allowance could not pay for: the whole run, unless it is shaped like a date, a dotted
    number (version, IP address) or an SSN."""
    spaced = " " in run or "\u00a0" in run  # none of these shapes has a space
    if not spaced and any(pattern.fullmatch(run) for pattern in (_DATE, _DOTTED, _SSN_SHAPE)):
        return []
    return [(0, len(run))]


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

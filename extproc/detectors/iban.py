"""International Bank Account Numbers: country code, check digits, BBAN; compact or spaced.

    detector: iban

A candidate starts at a word boundary with a country code and two check digits (`DE89`, `ES 58`), then
collects exactly as many letters and digits as that country's IBAN has, allowing one separator (space, dot
or dash) between any two of them: banks print groups of four, but national layouts (`NO 44 1850.05.14562`)
group differently. It must pass the ISO 7064 mod-97 check and the country's BBAN layout from the SWIFT
registry (via python-stdnum).
"""

from __future__ import annotations

from stdnum import iban as stdnum_iban
from stdnum import numdb

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

# IBAN length per country (SWIFT IBAN registry).
_LENGTHS = {
    entry[:2]: int(entry[2:]) for entry in ["AD24", "AE23", "AL28", "AT20", "AZ28", "BA20", "BE16", "BG22", "BH22", "BI27", "BR29", "BY28", "CH21", "CR22", "CY28", "CZ24", "DE22", "DJ27", "DK18", "DO28", "EE20", "EG29", "ES24", "FI18", "FK18", "FO18", "FR27", "GB22", "GE22", "GI23", "GL18", "GR27", "GT28", "HN28", "HR21", "HU28", "IE22", "IL23", "IQ23", "IS26", "IT27", "JO30", "KW30", "KZ20", "LB28", "LC32", "LI21", "LT20", "LU20", "LV21", "LY25", "MC27", "MD24", "ME22", "MK19", "MN20", "MR27", "MT31", "MU30", "NI28", "NL18", "NO15", "OM23", "PK24", "PL28", "PS29", "PT25", "QA29", "RO24", "RS22", "RU33", "SA24", "SC31", "SD18", "SE24", "SI19", "SK24", "SM27", "SO23", "ST25", "SV28", "TL23", "TN24", "TR26", "UA29", "VA22", "VG24", "XK20", "YE30"]
}
_LONGEST = max(_LENGTHS.values())
# A known country code at a word boundary (a head glued to a letter or digit is never at one, see
# `_at_boundary`), so hex and identifiers yield no heads.
_CODES = "|".join("".join(f"[{c}{c.lower()}]" for c in code) for code in sorted(_LENGTHS))  # ASCII only
_HEAD = compile_re2(rf"\b(?:{_CODES}) ?\d{{2}}")
_SEPARATORS = " .-"
_CLASSES = {"n": str.isdigit, "a": str.isalpha, "c": str.isalnum}
_LAYOUT_PART = compile_re2(r"(\d+)!([nac])")  # registry notation: `4!a6!n8!n`


def _layout(country: str) -> str:
    """The BBAN as one class letter per character (n digit, a letter, c either), from the SWIFT registry."""
    spec = numdb.get("iban").info(country)[0][1].get("bban", "")
    layout = "".join(part.group(2) * int(part.group(1)) for part in _LAYOUT_PART.finditer(spec))
    return layout if len(layout) == _LENGTHS[country] - 4 else "c" * (_LENGTHS[country] - 4)


_LAYOUTS = {country: _layout(country) for country in _LENGTHS}


def mod97_valid(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters as 10..35, remainder 1 mod 97."""
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


@register
class IbanDetector(Detector):
    name = "iban"
    owasp = ("LLM02:2025", "LLM02:2026")
    max_span = 2 * _LONGEST - 1  # a separator between every two characters

    def find(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        for start, head_end in match_spans(_HEAD, text):  # heads cannot overlap one another
            if (findings and start < findings[-1].end) or not _at_boundary(text, start):
                continue
            end = _iban_end(text, start, head_end)
            if end is not None:
                findings.append(Finding(self.name, "iban", start, end))
        return findings

    def hold(self, text: str) -> int:
        window = text[-(self.max_span - 1):]
        for start in range(len(window)):
            if (start == 0 or not window[start - 1].isalnum()) and _could_become_iban(window[start:]):
                return len(window) - start
        return 0


def _could_become_iban(tail: str) -> bool:
    """Whether `tail` is the beginning of an IBAN that continues past its end."""
    country = tail[:2].upper()
    if len(tail) == 1:
        return any(code.startswith(country) for code in _LENGTHS)
    if country not in _LAYOUTS or not tail[:2].isascii():
        return False
    rest = tail[2:]
    rest = rest[1:] if rest[:1] == " " else rest
    if not all(char.isdigit() for char in rest[:2]):
        return False
    return _fits_layout(rest[2:], _LAYOUTS[country])


def _fits_layout(bban: str, layout: str) -> bool:
    """`bban` (with single separators) is a proper beginning of a BBAN of this layout."""
    count, pos = 0, 0
    while pos < len(bban):
        char = bban[pos]
        if char in _SEPARATORS and (pos == 0 or bban[pos - 1] not in _SEPARATORS):
            pos += 1
            continue
        if count >= len(layout) or not (char.isascii() and _CLASSES[layout[count]](char)):
            return False
        count += 1
        pos += 1
    return count < len(layout)


def _at_boundary(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")


def _iban_end(text: str, start: int, head_end: int) -> int | None:
    """End offset of a valid IBAN starting at `start`, or None."""
    country = text[start:start + 2].upper()
    length = _LENGTHS.get(country)
    if length is None:
        return None
    chars = [country, text[head_end - 2:head_end]]
    count, pos = 4, head_end
    while count < length and pos < len(text):
        char = text[pos]
        following = text[pos + 1:pos + 2]
        if char in _SEPARATORS and following.isascii() and following.isalnum():
            pos += 1
            char = text[pos]
        if not (char.isascii() and char.isalnum()):
            return None
        chars.append(char)
        count += 1
        pos += 1
    if count < length or (pos < len(text) and (text[pos].isalnum() or text[pos] == "_")):
        return None
    compact = "".join(chars).upper()
    return pos if mod97_valid(compact) and stdnum_iban.is_valid(compact, check_country=False) else None

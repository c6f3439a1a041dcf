"""E-mail addresses: dot-atom local part, then a domain name (IDN-friendly) or an IP address literal.

    detector: email

Matches `local@domain.tld` where the local part is an RFC 5322 dot-atom (ASCII or accented Latin), the
domain a series of labels (Unicode letters, digits and inner hyphens; each at most 63 characters) ending in
a TLD of two or more letters, all-ASCII or all-non-ASCII, or a punycode `xn--` TLD; or `local@[192.0.2.1]`
and `local@[IPv6:...]`.
Quoted local parts and comments (legal, but practically unused) are not matched.
"""

from __future__ import annotations

import ipaddress
import unicodedata

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

# RFC 5322 atext, plus the accented Latin letters of internationalised (RFC 6531) mailboxes such as
# `jürgen@`; other scripts are left out so that `联系test@x.cn` does not swallow the word before it.
_LATIN_RANGES = ((0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x1E00, 0x1EFF))
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-" + "".join(
    rf"\x{{{low:04X}}}-\x{{{high:04X}}}" for low, high in _LATIN_RANGES)
_LOCAL_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-."
    + "".join(chr(code) for low, high in _LATIN_RANGES for code in range(low, high + 1)))
_U = r"[\p{L}\p{N}\p{M}]"
_NON_ASCII_LETTER = r"[^\x00-\x7F\P{L}]"
_LABEL = rf"{_U}(?:[\p{{L}}\p{{N}}\p{{M}}-]*{_U})?"
_TLD = (rf"(?:[Xx][Nn]--[A-Za-z0-9-]{{1,59}}|[A-Za-z]{{2,63}}"
        rf"|{_NON_ASCII_LETTER}(?:{_NON_ASCII_LETTER}|\p{{M}}){{1,62}})")
_LITERAL = r"\[(?:IPv6:[0-9A-Fa-f:.]{2,45}|[0-9.]{7,15})\]"
_PATTERN = compile_re2(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:(?:{_LABEL}\.)+{_TLD}|{_LITERAL})")

# File names such as `icon@2x.png` have the shape of an address; none of these is a delegated TLD.
_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "tif", "tiff", "ico", "avif",
                              "heic"})
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _is_domain_char(ch: str) -> bool:
    """Superset of every character the domain part can contain (unassigned code points included, in case
    RE2's Unicode tables are newer than Python's)."""
    if ch.isascii():
        return ch.isalnum() or ch in "-.[]:"
    category = unicodedata.category(ch)
    return category[0] in "LMN" or category == "Cn"


@register
class EmailDetector(Detector):
    name = "email"
    owasp = ("LLM02:2025", "LLM02:2026")
    max_span = 254  # RFC 5321 path limit: 256 minus the angle brackets

    def find(self, text: str) -> list[Finding]:
        if "@" not in text:
            return []  # every address has one (normalisation already folded look-alike at signs)
        findings = []
        for start, end in match_spans(_PATTERN, text):
            if _acceptable(text, start, end):
                findings.append(Finding(self.name, "email", start, end))
        return findings

    def hold(self, text: str) -> int:
        # A match running past the end is either still in its local part (a run of local-part characters) or
        # already past its `@` (local run, `@`, then a run of domain characters).
        if "@" not in text[-self.max_span :]:
            return hold_run(text, _LOCAL_CHARS, self.max_span)  # not past an `@`: only a local part can run on
        return self.hold_all(text)

    def hold_all(self, text: str) -> int:
        """`hold` without its shortcut (tests compare the two)."""
        held = hold_run(text, _LOCAL_CHARS, self.max_span)
        domain = 0
        while domain < min(len(text), self.max_span) and _is_domain_char(text[-1 - domain]):
            domain += 1
        at = len(text) - domain - 1
        if at > 0 and text[at] == "@":
            local = hold_run(text[:at], _LOCAL_CHARS, self.max_span)
            if local:
                held = max(held, min(domain + 1 + local, self.max_span - 1))
        return held


def _acceptable(text: str, start: int, end: int) -> bool:
    if end - start > EmailDetector.max_span:
        return False
    local, domain = text[start:end].split("@", 1)
    if len(local) > 64 or (start > 0 and text[start - 1] == "@"):
        return False
    if domain.startswith("["):
        return _valid_literal(domain[1:-1])
    labels = domain.split(".")
    if any(len(label) > 63 for label in labels) or labels[-1].lower() in _FILE_EXTENSIONS:
        return False
    # `a@b.com2`: the TLD does not end here
    return not (end < len(text) and text[end] in _ASCII_WORD and labels[-1].isascii())


def _valid_literal(literal: str) -> bool:
    try:
        if literal[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(literal[5:])
        else:
            ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True

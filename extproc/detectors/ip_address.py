"""IP addresses: dotted-quad IPv4 and every textual form of IPv6, validated by `ipaddress`.

    detector: ip_address
    params:
      include_private: true   # false: only globally routable addresses (no 10/8, 127/8, fe80::/10, ...)

Labels `ipv4` and `ipv6`. A dotted quad that is one part of a longer dotted run (`1.2.3.4.5`, OIDs) or is
glued to letters (`v1.2.3.4`) is not an address; neither is a `::`-run glued to letters (`std::vector`) or an
index slice (`a[1::2]`).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

_IPV4 = compile_re2(r"\d{1,3}(?:\.\d{1,3}){3}")
_IPV6_RUN = compile_re2(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_IPV6_MAX = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")
_CHARS = frozenset("0123456789abcdefABCDEF:.")


class IpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_private: bool = True


@register
class IpAddressDetector(Detector):
    name = "ip_address"
    owasp = ("LLM02:2025", "LLM02:2026")
    Params = IpParams
    max_span = _IPV6_MAX

    def find(self, text: str) -> list[Finding]:
        v6 = [(start, end, address) for start, end, address in _ipv6(text) if self._wanted(address)]
        findings = [Finding(self.name, "ipv6", start, end) for start, end, _ in v6]
        for start, end, address in _ipv4(text):
            inside_v6 = any(s < end and start < e for s, e, _ in v6)
            if not inside_v6 and self._wanted(address):
                findings.append(Finding(self.name, "ipv4", start, end))
        return sorted(findings, key=lambda finding: finding.start)

    def hold(self, text: str) -> int:
        return hold_run(text, _CHARS, self.max_span)

    def _wanted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self.params.include_private or address.is_global


def _ipv4(text: str) -> list[tuple[int, int, ipaddress.IPv4Address]]:
    found = []
    for start, end in match_spans(_IPV4, text):
        before = text[max(0, start - 2):start].rjust(2)
        after = text[end:end + 2].ljust(2)
        if _word(before[1]) or _word(after[0]) or (before[1] == "." and before[0].isdigit()) \
                or (after[0] == "." and after[1].isdigit()):
            continue
        try:
            found.append((start, end, ipaddress.IPv4Address(text[start:end])))
        except ValueError:  # an octet above 255, or a leading zero (ambiguous: octal to some parsers)
            continue
    return found


def _ipv6(text: str) -> list[tuple[int, int, ipaddress.IPv6Address]]:
    found = []
    for run_start, run_end in match_spans(_IPV6_RUN, text):
        start, end = _trim(text, run_start, run_end)
        candidate = text[start:end]
        if end - start > _IPV6_MAX or not any(c not in ":." for c in candidate) or _glued(text, start, end):
            continue
        try:
            found.append((start, end, ipaddress.IPv6Address(candidate)))
        except ValueError:
            continue
    return found


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop sentence punctuation around a run: trailing dots, and a lone leading or trailing colon."""
    while end > start and text[end - 1] == ".":
        end -= 1
    if end - start > 1 and text[end - 1] == ":" and text[end - 2] != ":":
        end -= 1
    if end - start > 1 and text[start] == ":" and text[start + 1] != ":":
        start += 1
    return start, end


def _glued(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if _word(before) or _word(after):
        return True
    # `a[1::2]` is an index slice; `http://[::1]:80` is an address.
    return before == "[" and start >= 2 and (_word(text[start - 2]) or text[start - 2] in ")]")


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"

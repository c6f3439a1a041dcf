"""US Social Security Numbers.

    detector: us_ssn
    params:
      undelimited: true   # also `078051120` / `078 05 1120`, but only after a keyword such as "SSN"

`AAA-GG-SSSS` is always reported; the same nine digits without dashes (or spaced) are ordinary numbers unless
a keyword naming an SSN comes shortly before. Numbers the SSA never issues are rejected: area 000, 666 or
900-999 (the 9xx range is ITINs), group 00, serial 0000.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans
from extproc.model import Finding

# `\b`: a number glued to a letter or digit is never standalone, so a run of digits yields no candidates.
_DASHED = compile_re2(r"\b\d{3}-\d{2}-\d{4}\b")
_UNDELIMITED = compile_re2(r"\b(?:\d{3} \d{2} \d{4}|\d{9})\b")
_KEYWORDS = compile_re2(r"\b(?:ssns?|social\s+security|soc\.?\s*sec\.?|ss\s*#|ss\s+(?:no|num|number))\b",
                        ignore_case=True)
_CONTEXT_WINDOW = 40
_CHARS = frozenset("0123456789- ")


class SsnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    undelimited: bool = True


def issuable(digits: str) -> bool:
    """Whether the SSA could have issued this nine-digit number."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


@register
class UsSsnDetector(Detector):
    name = "us_ssn"
    owasp = ("LLM02:2025", "LLM02:2026")
    Params = SsnParams
    max_span = 11

    def find(self, text: str) -> list[Finding]:
        spans = list(match_spans(_DASHED, text))
        if self.params.undelimited:
            spans += [(start, end) for start, end in match_spans(_UNDELIMITED, text)
                      if _KEYWORDS.search(text[max(0, start - _CONTEXT_WINDOW):start])]
        return [Finding(self.name, "us_ssn", start, end) for start, end in sorted(spans)
                if _standalone(text, start, end) and issuable(_digits(text[start:end]))]

    def hold(self, text: str) -> int:
        return hold_run(text, _CHARS, self.max_span)


def _digits(value: str) -> str:
    return value.replace("-", "").replace(" ", "")


def _standalone(text: str, start: int, end: int) -> bool:
    """Not glued to letters or digits, nor one part of a longer dashed or dotted number."""
    before = text[max(0, start - 2):start].rjust(2)
    after = text[end:end + 2].ljust(2)
    if before[1].isalnum() or before[1] == "_" or after[0].isalnum() or after[0] == "_":
        return False
    return not ((before[1] in "-." and before[0].isdigit()) or (after[0] in "-." and after[1].isdigit()))

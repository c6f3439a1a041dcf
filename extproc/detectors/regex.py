"""User-supplied patterns, run on RE2 (linear time: no ReDoS, whatever the pattern or input).

    detector: regex
    params:
      patterns:
        - {label: ticket_id, pattern: "TICKET-[0-9]{4,8}", max_length: 16}

`max_length` bounds the streaming hold-back: set it to the longest text the pattern can match (bounded
quantifiers such as `{4,8}` make that easy); matches are never longer than it. When every character a
pattern can match is known (no `.` or negated class), a stream holds back only the trailing run of such
characters, so ordinary prose after a `TICKET-[0-9]{4,8}` rule is not delayed by its whole `max_length`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run, pattern_chars
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding


class UserPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(pattern=r"^[a-z0-9_:.-]{1,64}$")
    pattern: str
    ignore_case: bool = False
    max_length: int = Field(256, ge=1, le=65536)

    @field_validator("pattern")
    @classmethod
    def _compiles_on_re2(cls, value: str) -> str:
        compile_re2(value)  # raises ValueError with a clear message
        return value


class RegexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patterns: list[UserPattern] = Field(min_length=1)


@register
class RegexDetector(Detector):
    name = "regex"
    Params = RegexParams

    def __init__(self, params: RegexParams) -> None:  # type: ignore[override]
        super().__init__(params)
        self._compiled = [(p.label, compile_re2(p.pattern, ignore_case=p.ignore_case), p.max_length)
                          for p in params.patterns]
        self.max_span = max(p.max_length for p in params.patterns)
        self._holds = [(pattern_chars(p.pattern, p.ignore_case), p.max_length) for p in params.patterns]

    def find(self, text: str) -> list[Finding]:
        findings = []
        for label, pattern, max_length in self._compiled:
            for match in pattern.finditer(text):
                start, end = match.span()
                if start < end:
                    findings.append(Finding(self.name, label, start, min(end, start + max_length)))
        return findings

    def hold(self, text: str) -> int:
        """Per pattern: the trailing run of characters it can match, else its whole window."""
        return max(hold_run(text, chars, max_length) if chars is not None else min(len(text), max_length - 1)
                   for chars, max_length in self._holds)

"""Credentials in prompts and responses: provider token formats and keyword assignments (`secret_rules.py`), a
table of the long tail of prefixed formats (`secret_formats.py`), secret words in prose and lone PEM lines
(`secret_catalog.py`, which lists every rule); value tests and the one placeholder rule in `secret_values.py`.

    detector: secrets
    params: {exclude: [jwt], min_entropy: 3.0}

`find` runs one `re2.Set` of what each rule's matches contain (mostly the anchor) over the UTF-8 text; only
rules whose needle occurs run their own pattern. `hold` is sound and tight: a match that can still grow
starts at an anchor (after at most `lead_in` identifier characters) within the rule's span of the end, or
the end cuts an anchor short; an anchor is dismissed once a `stop` (by default any character the rule cannot
contain) or the failure of its `lead` (keyword and separator, say) shows that no match from it reaches the
end. Nor does the boundary fall between a keyword and its value: the stream scanner only avoids findings.
The hold is computed by `secret_hold.py`.
"""

from __future__ import annotations

import re._parser as sre_parse  # the standard library's own parser measures rules and lists their characters
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from typing import Any

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import chars_of, folds
from extproc.detectors.patterns import compile_re2
from extproc.detectors.secret_catalog import ALL_LABELS as LABELS
from extproc.detectors.secret_catalog import FRAGMENT, FRAGMENT_LABEL, RULES, fragment_hold, fragment_value
from extproc.detectors.secret_hold import FOLD, SecretHold
from extproc.detectors.secret_rules import Rule
from extproc.detectors.secret_values import is_placeholder
from extproc.model import Finding

_CONTINUATION, _UTF8 = bytes(range(0x80, 0xC0)), ("utf-8", "surrogatepass")
_VALUE_GROUPS = ("v", "dq", "sq", "bq", "hq", "xml", "raw")
_UNBOUNDED = 1 << 20


class SecretsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include: list[str] | None = None  # labels to report; None = all
    exclude: list[str] = []
    min_entropy: float = Field(3.0, ge=0.0, le=8.0)  # bits/char for generic token, key and secret values
    min_password_entropy: float = Field(2.0, ge=0.0, le=8.0)  # people choose passwords: a lower bar

    @field_validator("include", "exclude")
    @classmethod
    def _known_labels(cls, labels: list[str] | None) -> list[str] | None:
        if unknown := [label for label in labels or () if label not in LABELS]:
            raise ValueError(f"unknown secret label(s) {', '.join(unknown)}; known: {', '.join(LABELS)}")
        return labels


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    regex: Any
    span: int  # longest match, in characters
    anchors: tuple[str, ...]  # folded when the rule ignores case
    partials: frozenset[str]  # proper prefixes of the anchors
    lead: Any | None  # and below, how many characters from the anchor's start decide it
    lead_reach: int
    closure: tuple[Any, int] | None  # the regex and its width
    stop: Any | None  # a regex, or a plain string for str.find


@register
class SecretsDetector(Detector):
    name = "secrets"
    owasp = ("LLM02:2025", "LLM02:2026")
    Params = SecretsParams

    def __init__(self, params: SecretsParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        wanted = set(LABELS if p.include is None else p.include) - set(p.exclude)
        self._wanted, self._fragments = frozenset(wanted), FRAGMENT_LABEL in wanted
        self._rules = [_compiled(i) for i, rule in enumerate(RULES) if wanted & {rule.label, *rule.labels}]
        rules = tuple(r.rule for r in self._rules)
        self._prefilter = _prefilter(rules, self._fragments) if rules or self._fragments else None
        self.max_span = max((r.span for r in self._rules), default=1)
        self._hold = SecretHold(self._rules, self.max_span)

    def find(self, text: str) -> list[Finding]:
        return [finding for finding, _ in self.matches(text)]

    def matches(self, text: str) -> list[tuple[Finding, int]]:
        """Findings with where the text each depends on starts (a keyword may precede the secret)."""
        if not text or self._prefilter is None:
            return []
        data = text.encode(*_UTF8)
        hits, found = self._prefilter.Match(data) or (), []
        for i in hits:
            found += self._scan(self._rules[i], data) if i < len(self._rules) else _fragment_lines(data)
        return _dedupe(_to_chars(found, data, len(text)))

    def _scan(self, compiled: _Compiled, data: bytes) -> list[tuple]:
        rule, index, out = compiled.rule, tuple(compiled.regex.groupindex.items()), []
        for m in compiled.regex.finditer(data):  # (the wrapper's groupdict() is quadratic in the groups)
            every = m._spans  # the wrapper's own list: one attribute read instead of a call per group
            spans = {name: every[i] for name, i in index}
            groups = {name: data[a:b].decode(*_UTF8) for name, (a, b) in spans.items() if a != -1}
            groups["match"] = data[spans["kw"][0] : every[0][1]].decode(*_UTF8)
            verdict = rule.check(groups, self.params) if rule.check else rule.score
            if verdict is None:
                continue
            label, score, start, end = self._place(rule, verdict, spans, m)
            body = max(start, spans["kw"][1]) if end - spans["kw"][1] >= 8 else start  # past a prefix
            if label in self._wanted and not is_placeholder(data[body:end].decode(*_UTF8)):
                out.append((label, every[0][0], start, end, score, rule.priority, compiled.span))
        return out

    @staticmethod
    def _place(rule: Rule, verdict: Any, spans: dict, m: Any) -> tuple[str, float, int, int]:
        """Label, score and byte span of a match: a table check gives (label, score, length from the anchor);
        otherwise the value group, or the whole match, is the secret."""
        if isinstance(verdict, tuple):
            label, score, length = verdict
            return label, score, spans["kw"][0], spans["kw"][0] + length  # table tokens are ASCII
        name = next((g for g in _VALUE_GROUPS if g in spans and spans[g][0] != -1), None)
        start, end = spans[name] if name else m._spans[0]
        return rule.label, verdict, start, end

    def hold(self, text: str) -> int:
        held = self._hold.hold(text, self.matches)
        return max(held, fragment_hold(text)) if self._fragments else held


_FRAGMENT, _ARMOR = compile_re2(FRAGMENT), compile_re2(r"-----(BEGIN|END) ([A-Z0-9 ]{1,60})-----")


def _fragment_lines(data: bytes) -> list[tuple]:
    """Lone base64 lines; not inside a visible certificate or public-key block (one walk over the armor
    lines, so linear however many lines there are)."""
    armor = [(m.start(), m.group(1) == b"BEGIN" and b"PRIVATE" not in m.group(2)) for m in _ARMOR.finditer(data)]
    out, i, public = [], 0, False
    for m in _FRAGMENT.finditer(data):
        start, end = m.span(1)
        while i < len(armor) and armor[i][0] < start:
            public, i = armor[i][1], i + 1
        if not public and fragment_value(data[start:end].decode()):
            out.append((FRAGMENT_LABEL, start, start, end, 0.5, 1, 76))
    return out


def _to_chars(found: list[tuple], data: bytes, length: int) -> list[tuple]:
    """Byte offsets to character offsets; each finding is cut at its rule's span from the context start."""
    chars: dict[int, int] = {}
    if len(data) != length:
        last_byte = last_char = 0
        for offset in sorted({o for f in found for o in f[1:4]}):
            last_char += len(data[last_byte:offset].translate(None, _CONTINUATION))
            last_byte, chars[offset] = offset, last_char
    out = []
    for label, ctx, start, end, score, priority, span in found:
        ctx, start, end = chars.get(ctx, ctx), chars.get(start, start), chars.get(end, end)
        out.append((label, ctx, start, min(end, ctx + span), score, priority))
    return out


def _dedupe(found: list[tuple]) -> list[tuple[Finding, int]]:
    """Drop repeats and findings that overlap one of a more specific rule (higher priority)."""
    best: dict[tuple, tuple] = {}
    for f in found:
        if f[3] > f[2] and f[4] > best.get((f[0], f[2], f[3]), (0,) * 5)[4]:
            best[(f[0], f[2], f[3])] = f
    kept: list[tuple] = []
    for level in sorted({f[5] for f in best.values()}, reverse=True):
        blockers = sorted((f[2], f[3]) for f in kept)
        starts, reach = [b[0] for b in blockers], list(accumulate((b[1] for b in blockers), max))
        for f in (f for f in best.values() if f[5] == level):
            i = bisect_left(starts, f[3])
            if i == 0 or reach[i - 1] <= f[2]:
                kept.append(f)
    kept.sort(key=lambda f: (f[2], f[3], f[0]))
    return [(Finding(SecretsDetector.name, f[0], f[2], f[3], f[4]), f[1]) for f in kept]


@cache
def _compiled(index: int) -> _Compiled:
    rule = RULES[index]
    pattern, lead = rule.pattern(), rule.anchor_group() + rule.lead if rule.lead else None
    width = _width(pattern)  # unbounded (RE2 caps {n,m} at 1000) needs max_len: a test checks max_span
    closure = f"{rule.anchor_group()}(?i:{rule.closure})" if rule.closure else None
    stop = rule.stop if rule.stop is not None else _stop_class(rule)
    anchors = tuple(a.translate(FOLD) for a in rule.anchors) if rule.ignore_case else rule.anchors
    return _Compiled(
        rule, compile_re2(pattern), min(width, rule.max_len or width), anchors,
        frozenset(a[:k] for a in anchors for k in range(1, len(a))),
        compile_re2(rule.prefix() + lead) if lead else None, _width(lead) if lead else 0,
        (compile_re2(closure), _width(closure)) if closure else None,
        stop if not stop or not set(stop) & set("\\[](){}.*+?^$|") else compile_re2(stop))


def _width(pattern: str) -> int:
    return min(sre_parse.parse(pattern).getwidth()[1], _UNBOUNDED)


def _stop_class(rule: Rule) -> str | None:
    """`[^...]` of every character a match can hold from its anchor on, or None if that set is open-ended."""
    chars = chars_of(sre_parse.parse(rule.body), False)
    if chars is None:
        return None
    chars |= {f for anchor in rule.anchors for c in anchor for f in folds(c, rule.ignore_case)}
    return "[^" + "".join("\\" + c if c in "\\]^-[" else c if c.isprintable() else f"\\x{{{ord(c):x}}}"
                          for c in sorted(chars)) + "]"


@cache
def _prefilter(rules: tuple[Rule, ...], fragments: bool) -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20
    prefilter = re2.Set.SearchSet(options)
    for rule in rules:
        prefilter.Add(rule.needle())
    if fragments:
        prefilter.Add(FRAGMENT)
    prefilter.Compile()
    return prefilter

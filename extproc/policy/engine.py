"""The policy engine: runs the rules' detectors over segments and turns their hits into one `Decision`.

`decide(hits)` is the one place where an outcome is decided: deny > error > redact > annotate > allow; only
`mode: enforce` rules change traffic, `mode: monitor` hits are recorded as `would_<action>`; a detector that
failed is a hit with action `error` when its rule fails closed (`on_error`), never confused with a finding.
Callers act on the Decision (refuse with `decision.refusal`, apply `decision.spans`); nothing here raises.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extproc import metrics
from extproc.errors import GatewayError, PolicyDenied, PolicyUnavailable
from extproc.model import Finding, Segment
from extproc.normalize import Budget, normalize
from extproc.redact import Span, merge_spans, replacement_for
from extproc.rules import CompiledRule, Hit
from extproc.work_budget import WorkBudget, cpu_now

# A failed detector (error) outranks redact: a redaction that may be incomplete is not sent; a definite deny
# outranks it: the client then gets the policy's reason.
ACTION_RANK = {"allow": 0, "annotate": 1, "redact": 2, "error": 3, "deny": 4}
DETECTOR_FAILED = "detector_failed"
WORK_BUDGET_SPENT = "work_budget_spent"
_NOT_RUN = frozenset((DETECTOR_FAILED, WORK_BUDGET_SPENT))


@dataclass(slots=True)
class Verdict:
    """Everything the rules found during one exchange, both directions."""

    hits: list[Hit] = field(default_factory=list)

    @property
    def decision(self) -> str:
        return decide(self.hits).action

    @property
    def would(self) -> list[str]:
        return list(decide(self.hits).would)

    def rule_ids(self) -> list[str]:
        return sorted({h.rule.id for h in self.hits})


def run_detector(rule: CompiledRule, text: str, timings: dict[str, float] | None = None,
                 work: WorkBudget | None = None, role: str | None = None) -> list[Finding]:
    """`detector.find` (or `find_in_role` when the message role is known), its time observed (or added to
    `timings`: streams observe one sum per detector when they end) and charged to the exchange's `work`
    budget. A failure, or a budget already spent, is a finding of its own label, which decide() turns into the
    rule's on_error."""
    detector = rule.detector
    if work is not None and work.spent:
        return [Finding(detector.name, WORK_BUDGET_SPENT, 0, 0, 0.0)]
    started, cpu = time.perf_counter(), cpu_now()
    try:
        return detector.find(text) if role is None else detector.find_in_role(text, role)
    except Exception:  # an outcome, not a finding: decide() applies the rule's on_error
        metrics.ERRORS.labels(kind="detector").inc()
        return [Finding(detector.name, DETECTOR_FAILED, 0, 0, 0.0)]
    finally:
        if work is not None:
            work.charge(cpu_now() - cpu)
        elapsed = time.perf_counter() - started
        if timings is None:
            observe_detector_time(detector.name, elapsed)
        else:
            timings[detector.name] = timings.get(detector.name, 0.0) + elapsed


def observe_detector_time(name: str, seconds: float) -> None:
    timer = _DETECTOR_TIMERS.get(name)
    if timer is None:
        timer = _DETECTOR_TIMERS[name] = metrics.DETECTOR_SECONDS.labels(detector=name)
    timer.observe(seconds)


_DETECTOR_TIMERS: dict[str, Any] = {}  # histogram children by detector name


View = tuple[str, Callable[[int, int], tuple[int, int]] | None]


def views_of(text: str, budget: Budget | None) -> list[View]:
    """What detectors scan: the normalised text (NFKC, invisible characters removed, look-alikes folded) and
    each decoded base64/URL/hex/tag segment, with a map back to original offsets."""
    norm = normalize(text, budget)
    views: list[View] = [(norm.text, None if norm.text == text else norm.to_original)]
    if "\\" in text:  # JSON text (streamed tool-call arguments): escapes must not hide a match
        views.append(unescaped_view(text))
    for decoded in norm.decoded:
        span = (decoded.original_start, decoded.original_end)
        views.append((decoded.text, _whole_span(span)))
    return views


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"'}


def unescaped_view(text: str) -> View:
    """`text` with JSON string escapes decoded (`\\n`, `\\u0041`), and a map from decoded offsets back to
    the escaped text, so a redaction replaces the whole escaped spelling."""
    out: list[str] = []
    starts: list[int] = []  # for each decoded character, where its spelling starts in `text`
    i, size = 0, len(text)
    while i < size:
        char, step = text[i], 1
        if char == "\\" and i + 1 < size:
            code = text[i + 1]
            if code in _ESCAPES:
                char, step = _ESCAPES[code], 2
            elif code == "u" and _is_hex(text[i + 2 : i + 6]):
                char, step = chr(int(text[i + 2 : i + 6], 16)), 6
        out.append(char)
        starts.append(i)
        i += step
    starts.append(size)
    return "".join(out), lambda start, end: (starts[start], starts[end])


def _is_hex(digits: str) -> bool:
    return len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits)


def _whole_span(span: tuple[int, int]) -> Callable[[int, int], tuple[int, int]]:
    """A decoded segment maps every finding back to the whole encoded run it came from."""
    return lambda _start, _end: span


def find_in_views(rule: CompiledRule, views: list[View], timings: dict[str, float] | None = None,
                  work: WorkBudget | None = None, role: str | None = None) -> list[Finding]:
    found: dict[tuple[str, int, int], Finding] = {}
    for scanned, to_original in views:
        for finding in run_detector(rule, scanned, timings, work, role):
            if to_original is not None:
                start, end = to_original(finding.start, finding.end)
                finding = dataclasses.replace(finding, start=start, end=end)
            key = (finding.label, finding.start, finding.end)
            if key not in found or found[key].score < finding.score:
                found[key] = finding
    return sorted(found.values(), key=lambda f: (f.start, f.end))


def scan_text(rules: tuple[CompiledRule, ...], text: str, role: str, direction: str,
              budget: Budget | None = None, normalized: bool = True,
              timings: dict[str, float] | None = None, work: WorkBudget | None = None) -> list[Hit]:
    """All hits of `rules` in one piece of text; rules sharing a detector instance run it once."""
    hits: list[Hit] = []
    cache: dict[int, list[Finding]] = {}
    views: list[View] = views_of(text, budget) if normalized else [(text, None)]
    for rule in rules:
        if not rule.scans_role(role):
            continue
        key = id(rule.detector)
        if key not in cache:
            raw: list[View] = [(text, None)]
            cache[key] = find_in_views(rule, views if rule.detector.normalized else raw, timings, work, role)
        for finding in cache[key]:
            if finding.label in _NOT_RUN:
                if rule.on_error == "fail_closed":
                    hits.append(Hit(rule, finding, "", direction, action_taken="error"))
            elif finding.score >= rule.min_score:
                hits.append(Hit(rule, finding, text[finding.start : finding.end], direction))
    return hits


def scan_segments(rules: tuple[CompiledRule, ...], segments: list[Segment], direction: str,
                  budget: Budget | None = None, normalized: bool = True,
                  work: WorkBudget | None = None) -> list[tuple[int, Hit]]:
    found: list[tuple[int, Hit]] = []
    for index, segment in enumerate(segments):
        for hit in scan_text(rules, segment.text, segment.role, direction, budget, normalized, work=work):
            found.append((index, hit))
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    """What a set of hits decides."""

    action: str  # allow | annotate | redact | error | deny
    rules: tuple[str, ...] = ()  # every rule that hit
    would: tuple[str, ...] = ()  # what monitor-mode rules would have done: would_deny, ...
    refusal: GatewayError | None = None  # what the client gets when action is deny or error
    spans: dict[int, list[Span]] = field(default_factory=dict)  # merged redaction spans per segment index


def decide(hits: list[Hit] | list[tuple[int, Hit]]) -> Decision:
    """The one decision over the hits of one text (`Hit`s) or of several segments (`(index, Hit)`)."""
    found = [item if isinstance(item, tuple) else (0, item) for item in hits]
    enforced = [(index, hit) for index, hit in found if hit.rule.enforced]
    action = max((hit.action for _, hit in enforced), key=ACTION_RANK.__getitem__, default="allow")
    spans: dict[int, list[Span]] = {}
    for index, hit in enforced:
        if hit.action == "redact" and isinstance(hit.rule, CompiledRule):  # a check's rewrite has no span
            spans.setdefault(index, []).append(_span_of(hit, hit.rule))
    return Decision(
        action=action,
        rules=tuple(sorted({hit.rule.id for _, hit in found})),
        would=tuple(sorted({f"would_{hit.action}" for _, hit in found if not hit.rule.enforced})),
        refusal=_refusal(action, [hit for _, hit in enforced if hit.action == action]),
        spans={index: merge_spans(group) for index, group in spans.items()},
    )


def _refusal(action: str, hits: list[Hit]) -> GatewayError | None:
    rules = tuple(sorted({h.rule.id for h in hits}))
    if action == "error" and any(h.finding.label == WORK_BUDGET_SPENT for h in hits):
        return PolicyUnavailable(f"the exchange used up its detector CPU budget; rule(s) {', '.join(rules)} "
                                 "fail closed", code="work_budget_exceeded", rules=rules)
    if action == "error":
        detectors = ", ".join(sorted({repr(h.finding.detector) for h in hits}))
        return PolicyUnavailable(f"detector {detectors} failed; rule(s) {', '.join(rules)} fail closed",
                                 rules=rules)
    if action != "deny":
        return None
    labels = ", ".join(sorted({h.finding.label for h in hits}))
    where = sorted({h.where for h in hits if h.where})
    place = f" in {', '.join(where[:3])}" if where else ""
    return PolicyDenied(f"blocked by policy rule(s) {', '.join(rules)}: {labels} detected{place}", rules=rules)


def _span_of(hit: Hit, rule: CompiledRule) -> Span:
    replacement = hit.finding.replacement
    if replacement is None:
        replacement = replacement_for(rule.redaction, hit.finding.label, hit.value)
    return Span(hit.finding.start, hit.finding.end, replacement)

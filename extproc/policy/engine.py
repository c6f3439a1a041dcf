"""The policy engine: runs the rules' detectors over segments and turns findings into one verdict.

Precedence: deny > redact > annotate > allow. Only `mode: enforce` rules change traffic; `mode: monitor` hits
are recorded as `would_<action>`. A detector that raises is handled by its rule's `on_error`, never confused
with a finding.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field

from extproc import metrics
from extproc.errors import PolicyDenied, PolicyUnavailable
from extproc.model import Finding, Segment
from extproc.normalize import Budget, normalize
from extproc.policy.compile import CompiledRule
from extproc.redact import Span, replacement_for

ACTION_RANK = {"allow": 0, "annotate": 1, "redact": 2, "deny": 3}


@dataclass(frozen=True, slots=True)
class Hit:
    rule: CompiledRule
    finding: Finding
    value: str  # the matched text: used for digests and redaction, never logged unless rule.capture
    direction: str
    action_taken: str | None = None  # a check's rewrite records "redact" whatever its rule's action

    @property
    def action(self) -> str:
        return self.action_taken or self.rule.action


@dataclass(slots=True)
class Verdict:
    """Everything the rules found during one exchange, both directions."""

    hits: list[Hit] = field(default_factory=list)

    @property
    def decision(self) -> str:
        best = "allow"
        for hit in self.hits:
            if hit.rule.enforced and ACTION_RANK[hit.action] > ACTION_RANK[best]:
                best = hit.action
        return best

    @property
    def would(self) -> list[str]:
        return sorted({f"would_{h.action}" for h in self.hits if not h.rule.enforced})

    def rule_ids(self) -> list[str]:
        return sorted({h.rule.id for h in self.hits})


def run_detector(rule: CompiledRule, text: str, timings: dict[str, float] | None = None,
                 role: str | None = None) -> list[Finding]:
    """`detector.find` (or `find_in_role` when the message role is known) under the rule's on_error; its time is
    observed, or added to `timings` (streams observe one sum per detector when they end, instead of a histogram
    sample per chunk)."""
    detector = rule.detector
    started = time.perf_counter()
    try:
        return detector.find(text) if role is None else detector.find_in_role(text, role)
    except Exception as exc:  # the rule's on_error decides; the error is counted and logged by type only
        metrics.ERRORS.labels(kind="detector").inc()
        if rule.on_error == "fail_closed":
            raise PolicyUnavailable(
                f"detector {detector.name!r} failed ({type(exc).__name__}); rule {rule.id!r} fails closed",
                rules=(rule.id,),
            ) from None
        return []
    finally:
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
    for decoded in norm.decoded:
        span = (decoded.original_start, decoded.original_end)
        views.append((decoded.text, lambda _s, _e, span=span: span))
    return views


def find_in_views(rule: CompiledRule, views: list[View], timings: dict[str, float] | None = None,
                  role: str | None = None) -> list[Finding]:
    found: dict[tuple[str, int, int], Finding] = {}
    for scanned, to_original in views:
        for finding in run_detector(rule, scanned, timings, role):
            if to_original is not None:
                start, end = to_original(finding.start, finding.end)
                finding = dataclasses.replace(finding, start=start, end=end)
            key = (finding.label, finding.start, finding.end)
            if key not in found or found[key].score < finding.score:
                found[key] = finding
    return sorted(found.values(), key=lambda f: (f.start, f.end))


def scan_text(rules: tuple[CompiledRule, ...], text: str, role: str, direction: str,
              budget: Budget | None = None, normalized: bool = True,
              timings: dict[str, float] | None = None) -> list[Hit]:
    """All hits of `rules` in one piece of text; rules sharing a detector instance run it once."""
    hits: list[Hit] = []
    cache: dict[int, list[Finding]] = {}
    views = views_of(text, budget) if normalized else [(text, None)]
    for rule in rules:
        if not rule.scans_role(role):
            continue
        key = id(rule.detector)
        if key not in cache:
            cache[key] = find_in_views(rule, views if rule.detector.normalized else [(text, None)], timings, role)
        for finding in cache[key]:
            if finding.score >= rule.min_score:
                hits.append(Hit(rule, finding, text[finding.start : finding.end], direction))
    return hits


def scan_segments(rules: tuple[CompiledRule, ...], segments: list[Segment], direction: str,
                  budget: Budget | None = None, normalized: bool = True) -> list[tuple[int, Hit]]:
    found: list[tuple[int, Hit]] = []
    for index, segment in enumerate(segments):
        for hit in scan_text(rules, segment.text, segment.role, direction, budget, normalized):
            found.append((index, hit))
    return found


def raise_if_denied(hits: list[Hit]) -> None:
    denying = [h for h in hits if h.rule.enforced and h.rule.action == "deny"]
    if denying:
        rules = tuple(sorted({h.rule.id for h in denying}))
        labels = ", ".join(sorted({h.finding.label for h in denying}))
        raise PolicyDenied(f"blocked by policy rule(s) {', '.join(rules)}: {labels} detected", rules=rules)


def redaction_spans(hits: list[Hit]) -> list[Span]:
    """Spans for the enforced redact hits of one piece of text."""
    return [
        Span(h.finding.start, h.finding.end,
             h.finding.replacement if h.finding.replacement is not None
             else replacement_for(h.rule.redaction, h.finding.label, h.value))
        for h in hits
        if h.rule.enforced and h.rule.action == "redact"
    ]

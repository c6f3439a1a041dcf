"""One decision record per exchange. It carries digests and lengths of what rules matched, never the raw
prompt, output or secret, unless the matching rule sets `capture: true`."""

from __future__ import annotations

from typing import Any

from extproc import logs, metrics
from extproc.digest import keyed_digest
from extproc.policy.engine import Verdict
from extproc.rules import Hit

_log = logs.get("extproc.audit")
DEFAULT_HITS_PER_RULE = 20  # the policy setting `audit_hits_per_rule`


def hit_record(hit: Hit) -> dict[str, Any]:
    record = {
        "rule": hit.rule.id,
        "action": hit.action,
        "mode": hit.rule.mode,
        "direction": hit.direction,
        "detector": hit.finding.detector,
        "label": hit.finding.label,
        "score": round(hit.finding.score, 3),
        "start": hit.finding.start,
        "length": len(hit.value),
        "digest": keyed_digest(hit.value),
    }
    if hit.where:
        record["where"] = hit.where
    owasp = _owasp_of(hit)
    if owasp:
        record["owasp"] = owasp
    if hit.rule.capture:
        record["captured"] = hit.value
    return record


def _owasp_of(hit: Hit) -> list[str]:
    component = getattr(hit.rule, "detector", None) or getattr(hit.rule, "check", None)
    return list(getattr(component, "owasp", ()))


def capped(hits: list[Hit], per_rule: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The records of the first `per_rule` hits of each rule, and per rule how many more were left out: one
    prompt of ten thousand e-mail addresses must not make a multi-megabyte audit line."""
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    omitted: dict[str, int] = {}
    for hit in hits:
        count = seen[hit.rule.id] = seen.get(hit.rule.id, 0) + 1
        if count <= per_rule:
            records.append(hit_record(hit))
        else:
            omitted[hit.rule.id] = count - per_rule
    return records, omitted


def emit(fields: dict[str, Any], verdict: Verdict, hits_per_rule: int = DEFAULT_HITS_PER_RULE) -> None:
    """Write the exchange's audit record (at most `hits_per_rule` hits of each rule, plus a count of the rest
    in `hits_omitted`) and count every hit in metrics."""
    decision = fields.get("decision") or verdict.decision
    for hit in verdict.hits:
        metrics.RULE_HITS.labels(rule=hit.rule.id, action=hit.action, mode=hit.rule.mode).inc()
    metrics.REQUESTS.labels(shape=fields.get("shape") or "none", decision=decision).inc()
    records, omitted = capped(verdict.hits, hits_per_rule)
    record = {**fields, "decision": decision, "would": verdict.would, "rules": verdict.rule_ids(),
              "hits": records}
    if omitted:
        record["hits_omitted"] = omitted
    _log.info("exchange_completed", **record)

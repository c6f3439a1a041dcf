"""One decision record per exchange. It carries digests and lengths of what rules matched, never the raw
prompt, output or secret, unless the matching rule sets `capture: true`."""

from __future__ import annotations

from typing import Any

from extproc import logs, metrics
from extproc.digest import keyed_digest
from extproc.policy.engine import Hit, Verdict

_log = logs.get("extproc.audit")


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


def emit(fields: dict[str, Any], verdict: Verdict) -> None:
    """Write the exchange's audit record and count it in metrics."""
    decision = fields.get("decision") or verdict.decision
    for hit in verdict.hits:
        metrics.RULE_HITS.labels(rule=hit.rule.id, action=hit.action, mode=hit.rule.mode).inc()
    metrics.REQUESTS.labels(shape=fields.get("shape") or "none", decision=decision).inc()
    record = {**fields, "decision": decision, "would": verdict.would, "rules": verdict.rule_ids(),
              "hits": [hit_record(h) for h in verdict.hits]}
    _log.info("exchange_completed", **record)

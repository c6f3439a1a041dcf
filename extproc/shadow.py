"""Shadow policy: a candidate policy evaluated on the same live exchanges as the active one, changing nothing.

The server feeds every ext_proc message of an exchange to a second Session built on the candidate policy and
throws its replies away. When the exchange ends, the active session's audit record gets a `shadow` field
(the candidate's decision and rules, and whether they differ), and `extproc_shadow_differences_total{rule}`
counts the rules whose hits differ. So a team can try a rule on real cluster traffic without a redeploy.

The shadow sees the messages the *active* policy asked Envoy for (if the active policy skips a response
phase, so does the shadow). Checks that need I/O (a Redis budget) are not evaluated in the shadow: their
request reply is an awaitable, which the shadow drops and records as `skipped`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from extproc import metrics, pb
from extproc.policy.compile import CompiledPolicy
from extproc.session import Session


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: str
    rules: tuple[str, ...]


class Shadow:
    def __init__(self, policy: CompiledPolicy) -> None:
        self.session = Session(policy, shadow=True)
        self.policy_digest = policy.digest[:12]
        self.skipped = False

    def observe(self, request: pb.ProcessingRequest) -> None:
        reply = self.session.handle(request)
        if inspect.iscoroutine(reply):
            reply.close()  # I/O checks are not run in the shadow
            self.skipped = True

    def outcome(self) -> Outcome:
        self.session.finish()
        record, verdict = self.session.record, self.session.verdict
        return Outcome(record.decision or verdict.decision, tuple(verdict.rule_ids()))

    def compare(self, decision: str, rules: list[str]) -> dict[str, Any]:
        """The audit field for this exchange, given the active policy's decision and rules; the rules whose
        hits differ are counted in metrics."""
        active = Outcome(decision, tuple(rules))
        shadow = self.outcome()
        changed = sorted(set(active.rules) ^ set(shadow.rules))
        for rule in changed:
            metrics.SHADOW_DIFFERENCES.labels(rule=rule).inc()
        differs = shadow.decision != active.decision or bool(changed)
        metrics.SHADOW_EXCHANGES.labels(outcome="differs" if differs else "same").inc()
        record: dict[str, Any] = {"policy": self.policy_digest, "decision": shadow.decision,
                                  "rules": list(shadow.rules), "differs": differs}
        if changed:
            record["changed_rules"] = changed
        if self.skipped:
            record["skipped"] = "checks with I/O"
        return record

"""The state of one exchange, shared by the session and its request and response phases, and the helpers
both directions use: applying a rule set to segments (through decide()), the annotation header, the
dynamic metadata and usage."""

from __future__ import annotations

import time
from typing import Any

from extproc import content_coding, conversation
from extproc.checks.runner import ExchangeChecks
from extproc.normalize import Budget
from extproc.policy.compile import CompiledPolicy
from extproc.policy.engine import Verdict, decide, scan_segments
from extproc.record import ExchangeRecord
from extproc.redact import redacted_pieces
from extproc.rules import CompiledRule
from extproc.shapes.base import Shape
from extproc.stream_scan import StreamScanner
from extproc.work_budget import WorkBudget

QUERY_LOCATOR = ("__query__",)


class SessionState:
    """Everything one exchange knows; Session, RequestPhase and ResponsePhase read and write it."""

    def __init__(self, policy: CompiledPolicy, shadow: bool = False) -> None:
        self.policy = policy
        self.shadow = shadow  # a candidate policy's session: no audit record, no metrics, no end-of-exchange work
        self.shadow_of: Any = None  # the Shadow observing this exchange with a candidate policy, if any
        self.settings = policy.settings
        self.verdict = Verdict()
        self.record = ExchangeRecord(policy=policy.digest[:12])
        self.headers: dict[str, str] = {}
        self.shape: Shape | None = None
        self.response_rules: tuple[CompiledRule, ...] = ()
        self.scanner: StreamScanner | None = None
        self.buffered_response = False
        self.streamed_response = False
        self.new_query: str | None = None  # the query string after redaction, when a rule changed it
        self.raw_request = b""
        self.raw_response = b""
        self.sniffed = bytearray()  # a streamed body's first bytes, until they tell its framing
        self.decoder: content_coding.Decoder | None = None
        self.response_ended = False  # the response body's end_of_stream arrived
        self.messages = 0
        self.asked_for_usage = False
        self.budget = Budget()  # normalisation work allowed for this whole exchange
        self.work = WorkBudget(self.settings.max_exchange_cpu_ms)  # detector CPU allowed for this exchange
        self.started = time.monotonic()
        self.finished = False
        self.checks: ExchangeChecks | None = None  # set when checks apply to this exchange
        self.large_body = False

    def _apply_rules(self, rules: tuple[CompiledRule, ...], segments: list[Any], doc: Any, direction: str) -> bool:
        """Scan segments, raise on deny, redact in place in `doc`; True if the document changed."""
        assert self.shape is not None
        found = scan_segments(rules, segments, direction, self.budget, self.settings.normalize, self.work)
        if direction == "request" and found:
            found = conversation.place_hits(found, segments, self.shape.messages_field)
        self.verdict.hits.extend(hit for _, hit in found)
        decision = decide(found)
        if decision.refusal is not None:
            raise decision.refusal  # the session boundary answers it in the API's format (_refuse)
        changed = False
        for index, spans in decision.spans.items():
            for locator, text in redacted_pieces(segments[index], spans):
                if locator == QUERY_LOCATOR:
                    self.new_query = text
                    continue
                self.shape.write_text(doc, locator, text)
                changed = True
        return changed

    def _record_usage(self, usage: dict[str, int] | None) -> None:
        if usage:
            self.record.usage = usage

    def _annotation(self) -> str:
        decision = decide(self.verdict.hits)  # once: decision and would come from the same evaluation
        parts = [decision.action]
        if decision.would:
            parts.append("would=" + ",".join(decision.would))
        if decision.rules:
            parts.append("rules=" + ",".join(decision.rules))
        return "; ".join(parts)

    def _metadata(self) -> dict[str, Any]:
        return {"decision": self.record.decision or self.verdict.decision,
                "rules": ",".join(self.verdict.rule_ids()), "shape": self.record.shape or "",
                "model": self.record.model or "", "policy": self.record.policy}

"""Per-exchange state handed to checks, and the two ways a check affects the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extproc.errors import GatewayError, PolicyDenied
from extproc.model import Finding, ParsedRequest
from extproc.rules import CompiledCheck, Exchange, Hit
from extproc.shapes.base import Shape


@dataclass(slots=True)
class CheckContext:
    exchange: Exchange
    shape: Shape
    headers: dict[str, str]
    hits: list[Hit]  # the exchange's hits (the session's verdict), where violations are recorded
    parsed: ParsedRequest | None = None
    changed: bool = False  # a check edited parsed.doc: the request body is rewritten
    response_rules: list[Any] = field(default_factory=list)  # exchange-scoped text rules added by checks
    state: dict[str, Any] = field(default_factory=dict)  # per rule id
    usage: dict[str, int] = field(default_factory=dict)  # reported by the response
    response_headers: dict[str, str] = field(default_factory=dict)
    complete: bool = False  # the response ended normally
    fields: dict[str, Any] = field(default_factory=dict)  # extra audit fields (no raw content)

    def violation(self, rule: CompiledCheck, label: str, message: str, *, error: type[GatewayError] = PolicyDenied,
                  code: str | None = None, direction: str = "request", **extra: Any) -> None:
        """Record that `rule` found `label`; raise `error` when the rule is enforced with action deny,
        otherwise (monitor mode, or annotate) only record it. `message` is shown to the client: no raw
        content beyond names the client itself sent (a model or tool name)."""
        self.record(rule, label, direction)
        if rule.enforced and rule.action == "deny":
            exc = error(message, code=code, rules=(rule.id,))
            for name, value in extra.items():
                setattr(exc, name, value)
            raise exc

    def rewrite(self, rule: CompiledCheck, label: str, direction: str = "request") -> bool:
        """Record a rewrite `rule` wants; True when it is enforced and the caller should apply it."""
        self.record(rule, label, direction, action="redact")
        return rule.enforced

    def record(self, rule: CompiledCheck, label: str, direction: str = "request", action: str | None = None) -> None:
        self.hits.append(Hit(rule, Finding(rule.check.name, label, 0, 0), "", direction, action))

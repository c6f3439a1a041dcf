"""The decision record of one exchange: what the session decided and why, rendered as the audit line.

Typed fields for what the session itself sets; `checks` for what governance checks add (served model, budget
figures, tool calls). Only fields that were set appear in the audit line."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class ExchangeRecord:
    policy: str  # digest prefix of the policy the exchange ran under
    request_id: str | None = None
    method: str | None = None
    path: str | None = None  # without the query string
    shape: str | None = None
    model: str | None = None
    stream: bool | None = None
    skipped_phases: list[str] | None = None
    status: int | None = None  # the upstream's (or Envoy's) response status
    response_mode: str | None = None  # streamed | buffered | buffered_text
    decision: str | None = None  # set by refusals, pass-through and local replies; else the verdict decides
    code: str | None = None
    reason: str | None = None
    status_sent: int | None = None
    ended_stream_with_error: bool | None = None
    local_reply: bool | None = None  # Envoy answered itself (413, 408, 503, ...)
    incomplete: bool | None = None
    usage: dict[str, int] | None = None
    duration_ms: float | None = None
    exchange: dict[str, Any] | None = None  # recorded for `policy diff` when a capture rule hit
    shadow: dict[str, Any] | None = None
    checks: dict[str, Any] = field(default_factory=dict)

    def refused(self) -> bool:
        return self.code is not None

    def as_fields(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "checks"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.checks}

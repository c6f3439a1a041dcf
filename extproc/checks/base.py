"""The check contract. Detectors find text; checks govern the exchange's structure: which model, which
tools, how many tokens. A check never writes the verdict itself: it calls `ctx.violation(rule, ...)` (deny,
or `would_deny` in monitor mode) and `ctx.rewrite(rule, ...)` (True when an enforced rule may change the
request), so `mode: monitor` and the audit record work the same for every check.

Hooks, all optional; the session calls them in this order:

* `on_request(rule, ctx)` (async): the parsed request is in `ctx.parsed`; may edit `ctx.parsed.doc` (then set
  `ctx.changed = True`), add exchange-scoped response rules to `ctx.response_rules`, keep state in
  `ctx.state[rule.id]`, or raise through `ctx.violation`.
* `on_response_doc(rule, ctx, doc)`: a complete (buffered) JSON response document, before it is scanned.
* `on_stream_payload(rule, ctx, payload)`: every decoded streamed event, before its text is scanned.
  Raising a GatewayError here ends the stream with the shape's error event.
* `on_tool_call(rule, ctx, call)`: a complete assistant tool call of a stream (checks with
  `inspects_tool_calls`); the stream holds every record carrying a piece of the call until this returns, and
  raising a GatewayError ends the stream before any of it reaches the client.
* `on_finish(rule, ctx)` (async): once, after the exchange ended however it ended (`ctx.usage` holds the
  usage the response reported, `ctx.complete` whether the response ended normally). Runs in the background.

`needs` says which phases the check needs Envoy to send (`request`, `response`), for phase skipping; an
instance may narrow it from its params.
"""

from __future__ import annotations

from abc import ABC
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from extproc.checks.context import CheckContext
    from extproc.model import ToolCall
    from extproc.rules import CompiledCheck


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    needs: frozenset[str] = frozenset({"request"})
    # OWASP Top 10 for LLM Applications entries this covers, 2025 and 2026 numbering, e.g. ("LLM03:2025",
    # "LLM04:2026"); written into every audit hit so reports can group by them.
    owasp: ClassVar[tuple[str, ...]] = ()
    # Streams assemble tool calls and call `on_tool_call` (holding the call's records) only for such checks.
    inspects_tool_calls: ClassVar[bool] = False

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    async def on_request(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        return None

    def on_response_doc(self, rule: CompiledCheck, ctx: CheckContext, doc: Any) -> None:
        return None

    def on_stream_payload(self, rule: CompiledCheck, ctx: CheckContext, payload: Any) -> None:
        return None

    def on_tool_call(self, rule: CompiledCheck, ctx: CheckContext, call: ToolCall) -> None:
        return None

    async def on_finish(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        return None

    async def close(self) -> None:
        """Release shared resources (connections) when the policy holding this instance is replaced."""
        return

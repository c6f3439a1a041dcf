"""The checks that apply to one exchange, run at each phase with the context they share.

A check that fails (raises something other than a GatewayError) is handled by its rule's `on_error`, as a
failing detector is: fail_closed answers 503 `policy_error`, fail_open skips the rule; both are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from extproc import logs, metrics
from extproc.checks.context import CheckContext
from extproc.errors import GatewayError, PolicyUnavailable
from extproc.rules import CompiledCheck

_log = logs.get("extproc.checks")


def needs_response(rules: tuple[CompiledCheck, ...]) -> bool:
    return any("response" in rule.check.needs for rule in rules)


class ExchangeChecks:
    def __init__(self, rules: tuple[CompiledCheck, ...], ctx: CheckContext) -> None:
        self.rules = rules
        self.ctx = ctx
        self.needs_response = needs_response(rules)
        self._tool_rules = [rule for rule in rules if rule.check.inspects_tool_calls]

    async def on_request(self) -> None:
        for rule in self.rules:
            try:
                await rule.check.on_request(rule, self.ctx)
            except GatewayError:
                raise
            except Exception as exc:
                _failed(rule, exc)

    def on_response_doc(self, doc: Any) -> None:
        self._each(self.rules, lambda rule: rule.check.on_response_doc(rule, self.ctx, doc))

    def on_stream_payload(self, payload: Any) -> None:
        self._each(self.rules, lambda rule: rule.check.on_stream_payload(rule, self.ctx, payload))

    def on_tool_call(self, call: Any) -> None:
        self._each(self._tool_rules, lambda rule: rule.check.on_tool_call(rule, self.ctx, call))

    def scanner_hooks(self) -> dict[str, Any]:
        """StreamScanner callbacks. Streamed tool calls are assembled for the checks that inspect them and held
        back only when one of those rules may refuse them (monitor rules just record)."""
        hooks: dict[str, Any] = {"on_payload": self.on_stream_payload}
        if self._tool_rules:
            hooks["on_tool_call"] = self.on_tool_call
            hooks["hold_tool_calls"] = any(r.enforced and r.action == "deny" for r in self._tool_rules)
        return hooks

    async def finish(self, usage: dict[str, int], complete: bool) -> None:
        """Background end-of-exchange work (e.g. settling a budget); nothing is left to refuse."""
        self.ctx.usage, self.ctx.complete = usage, complete
        for rule in self.rules:
            try:
                await rule.check.on_finish(rule, self.ctx)
            except Exception as exc:
                metrics.ERRORS.labels(kind="check").inc()
                _log.warning("check_finish_failed", rule=rule.id, check=rule.check.name,
                             error_type=type(exc).__name__, where=logs.where(exc))

    @staticmethod
    def _each(rules: Any, step: Callable[[CompiledCheck], Any]) -> None:
        for rule in rules:
            try:
                step(rule)
            except GatewayError:
                raise
            except Exception as exc:
                _failed(rule, exc)


def _failed(rule: CompiledCheck, exc: Exception) -> None:
    metrics.ERRORS.labels(kind="check").inc()
    _log.warning("check_failed", rule=rule.id, check=rule.check.name, error_type=type(exc).__name__,
                 where=logs.where(exc))
    if rule.on_error == "fail_closed":
        raise PolicyUnavailable(f"check {rule.check.name!r} failed ({type(exc).__name__}); rule {rule.id!r} "
                                "fails closed", rules=(rule.id,)) from None




"""One Session per ext_proc gRPC stream (one HTTP exchange): the only place that knows the message order.

request headers -> request body (BUFFERED) -> response headers (choose NONE / STREAMED / BUFFERED per
response) -> response body. Every handler returns exactly one reply of the matching kind. The session holds
the policy snapshot it started with, so a reload never mixes two rule sets inside one exchange. The handlers
live in `request_phase.py` and `response_phase.py`; this module owns the state, the dispatch, refusals and
the audit record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Coroutine
from enum import StrEnum
from typing import Any

import orjson

from extproc import (
    audit,
    envoy,
    logs,
    metrics,
    pb,
    shapes,
)
from extproc.errors import (
    GatewayError,
    PolicyUnavailable,
    decision_of,
)
from extproc.request_phase import RequestPhase
from extproc.response_phase import ResponsePhase
from extproc.shapes.base import Shape

_log = logs.get("extproc.session")
_MESSAGE_TIMERS: dict[str, Any] = {}  # histogram children by phase, looked up once
class Phase(StrEnum):
    """The ext_proc message kinds (the `request` oneof of ProcessingRequest)."""

    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"
    REQUEST_TRAILERS = "request_trailers"
    RESPONSE_TRAILERS = "response_trailers"




class Session(RequestPhase, ResponsePhase):

    # ---- dispatch -------------------------------------------------------------------------------------
    def handle(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse | Awaitable[pb.ProcessingResponse]:
        """The reply to one message. When checks with I/O (e.g. a Redis budget) apply, the request body's
        reply is an awaitable; everything else is answered synchronously."""
        kind = request.WhichOneof("request")
        started = time.perf_counter()
        self.messages += 1
        try:
            reply = self._dispatch(Phase(kind), getattr(request, kind))
            if not isinstance(reply, pb.ProcessingResponse):
                return self._guarded(reply, kind)
            return reply
        except Exception as exc:  # the session boundary: anything unexpected fails closed
            return self._on_failure(exc, kind)
        finally:
            if not self.shadow:
                self._observe_time(kind, started)

    def _dispatch(self, phase: Phase, msg: Any) -> pb.ProcessingResponse | Awaitable[pb.ProcessingResponse]:
        """The handler of each ext_proc phase, in the order Envoy sends them."""
        match phase:
            case Phase.REQUEST_HEADERS:
                return self._on_request_headers(msg)
            case Phase.REQUEST_BODY:
                return self._on_request_body(msg)
            case Phase.RESPONSE_HEADERS:
                return self._on_response_headers(msg)
            case Phase.RESPONSE_BODY:
                return self._on_response_body(msg)
            case Phase.REQUEST_TRAILERS:
                return self._on_request_trailers(msg)
            case Phase.RESPONSE_TRAILERS:
                return self._on_response_trailers(msg)

    @staticmethod
    def _observe_time(kind: str, started: float) -> None:
        timer = _MESSAGE_TIMERS.get(kind)
        if timer is None:
            timer = _MESSAGE_TIMERS[kind] = metrics.MESSAGE_SECONDS.labels(phase=kind)
        timer.observe(time.perf_counter() - started)

    async def _guarded(self, reply: Awaitable[pb.ProcessingResponse], kind: str) -> pb.ProcessingResponse:
        try:
            return await reply
        except Exception as exc:
            return self._on_failure(exc, kind)

    def _on_failure(self, exc: Exception, kind: str) -> pb.ProcessingResponse:
        if isinstance(exc, GatewayError):
            return self._refuse(exc, kind)
        metrics.ERRORS.labels(kind="internal").inc()
        _log.error("message_failed", phase=kind, error_type=type(exc).__name__, where=logs.where(exc),
                   request_id=self.record.request_id)
        return self._refuse(PolicyUnavailable("internal error while applying policy"), kind)

    def finish(self) -> Coroutine[Any, Any, None] | None:
        """Write the audit record; called exactly once when the gRPC stream ends, however it ends. Returns the
        checks' `on_finish` work (e.g. settling a budget) for the caller to run in the background."""
        if self.finished:
            return None
        self.finished = True
        if self.scanner is not None:
            self.scanner.observe_detector_seconds()
            self.verdict.hits.extend(self.scanner.hits)
            self._record_usage(self.scanner.usage)
            if self.scanner.error is not None:
                self._record_error(self.scanner.error, after_stream_start=True)
        if self.messages == 0 or ((self.streamed_response or self.buffered_response) and not self.response_ended):
            # The stream ended before the service saw the whole exchange (Envoy timed out or gave up before the
            # first message arrived; the upstream reset, the client left or a timeout cut the response).
            self.record.incomplete = True
            if self.buffered_response and not self.record.refused():
                # Envoy never handed over the body it was to buffer (over its buffer limit, upstream reset):
                # the client got Envoy's own error, not an inspected answer, so the record must not say allow.
                self.record.decision, self.record.code = "error", "response_not_inspected"
        self.record.duration_ms = round((time.monotonic() - self.started) * 1000, 3)
        if self.checks is not None:
            self.record.checks.update(self.checks.ctx.fields)
        if self.shadow:
            return None
        if any(hit.rule.capture for hit in self.verdict.hits):
            self.record.exchange = self._recorded_exchange()
        if self.shadow_of is not None:
            self.record.shadow = self.shadow_of.compare(self.record.decision or self.verdict.decision,
                                                           self.verdict.rule_ids())
        audit.emit(self.record.as_fields(), self.verdict, self.settings.audit_hits_per_rule)
        if self.checks is None:
            return None
        return self.checks.finish(self.record.usage or {}, self.response_ended and not self.record.refused())

    # ---- trailers: never requested by our configs, answered correctly if they come ----------------------
    def _on_request_trailers(self, msg: Any) -> pb.ProcessingResponse:
        return envoy.trailers_reply("request")

    def _on_response_trailers(self, msg: Any) -> pb.ProcessingResponse:
        return envoy.trailers_reply("response")

    # ---- refusals and annotations ----------------------------------------------------------------------
    def _refuse(self, exc: GatewayError, kind: str | None) -> pb.ProcessingResponse:
        if kind == "response_body" and self.scanner is not None:
            self._record_error(exc, after_stream_start=True)
            return envoy.body_reply("response", body=self.scanner.abort(exc))  # nothing held or later follows
        if kind in ("request_trailers", "response_trailers"):
            return envoy.trailers_reply("request" if kind == "request_trailers" else "response")
        self._record_error(exc, after_stream_start=False)
        body = self._error_shape().error_body(exc.status, exc.code, exc.message)
        header = f"{self.record.decision}; code={exc.code}" + (f"; rules={','.join(exc.rules)}" if exc.rules else "")
        headers = [(self.settings.annotate_header, header)]
        if exc.retry_after is not None:
            headers.append(("retry-after", str(max(1, int(exc.retry_after)))))
        return envoy.immediate_reply(exc.status, body, set_headers=headers,
                                     details=f"llm_policy_{exc.code}", metadata=self._metadata())

    def _record_error(self, exc: GatewayError, after_stream_start: bool) -> None:
        record = self.record
        record.decision, record.code, record.reason = decision_of(exc), exc.code, exc.message
        record.status_sent = None if after_stream_start else exc.status
        if after_stream_start:
            self.record.ended_stream_with_error = True

    def _recorded_exchange(self) -> dict[str, Any]:
        """The exchange as `policy diff --traffic` replays it: path, request and buffered response documents
        as they arrived (before any redaction). Only for exchanges where a `capture: true` rule hit."""
        exchange: dict[str, Any] = {"path": self.record.path or ""}
        for field, raw in (("request", self.raw_request), ("response", self.raw_response)):
            try:
                exchange[field] = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                exchange[field] = None
        return {k: v for k, v in exchange.items() if v is not None}


    def _error_shape(self) -> Shape:
        return self.shape or shapes.all_shapes()["openai_chat"]



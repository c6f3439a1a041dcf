"""One Session per ext_proc gRPC stream (one HTTP exchange): the only place that knows the message order.

request headers -> request body (BUFFERED) -> response headers (choose NONE / STREAMED / BUFFERED per
response) -> response body. Every handler returns exactly one reply of the matching kind. The session holds
the policy snapshot it started with, so a reload never mixes two rule sets inside one exchange.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

import orjson

from extproc import audit, envoy, limits, logs, metrics, pb, shapes
from extproc.checks.context import CheckContext
from extproc.checks.runner import ExchangeChecks, needs_response
from extproc.errors import (GatewayError, MalformedRequest, PayloadTooLarge, PolicyDenied, PolicyUnavailable,
                            UnsupportedEncoding)
from extproc.policy.compile import CompiledPolicy, Exchange
from extproc.policy.engine import Verdict, raise_if_denied, redaction_spans, scan_segments
from extproc.normalize import Budget
from extproc.redact import apply_spans, merge_spans
from extproc.shapes.base import Shape
from extproc.stream_scan import StreamScanner

_log = logs.get("extproc.session")
CONTINUE_REQUEST_BODY = envoy.body_reply("request")
CONTINUE_RESPONSE_BODY = envoy.body_reply("response")
LARGE_BODY_BYTES = 256 * 1024  # bodies scanned off the event loop (the server also asks Envoy for more time)
_MESSAGE_TIMERS: dict[str, Any] = {}  # histogram children by phase, looked up once
FRAMINGS = {"text/event-stream": "sse", "application/x-ndjson": "ndjson", "application/jsonl": "ndjson"}
DECISION_OF_ERROR = {PolicyDenied: "deny", MalformedRequest: "reject", PayloadTooLarge: "reject",
                     UnsupportedEncoding: "reject"}


class Session:
    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.settings = policy.settings
        self.verdict = Verdict()
        self.fields: dict[str, Any] = {"policy": policy.digest[:12]}
        self.headers: dict[str, str] = {}
        self.shape: Shape | None = None
        self.response_rules: tuple = ()
        self.scanner: StreamScanner | None = None
        self.buffered_response = False
        self.response_ended = False  # the response body's end_of_stream arrived
        self.messages = 0
        self.asked_for_usage = False
        self.budget = Budget()  # normalisation work allowed for this whole exchange
        self.started = time.monotonic()
        self.finished = False
        self.checks: ExchangeChecks | None = None  # set when checks apply to this exchange
        self.large_body = False

    # ---- dispatch -------------------------------------------------------------------------------------
    def handle(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse | Awaitable[pb.ProcessingResponse]:
        """The reply to one message. When checks with I/O (e.g. a Redis budget) apply, the request body's
        reply is an awaitable; everything else is answered synchronously."""
        kind = request.WhichOneof("request")
        started = time.perf_counter()
        self.messages += 1
        try:
            reply = getattr(self, f"_on_{kind}")(getattr(request, kind))
            if not isinstance(reply, pb.ProcessingResponse):
                return self._guarded(reply, kind)
            return reply
        except Exception as exc:  # the session boundary: anything unexpected fails closed
            return self._on_failure(exc, kind)
        finally:
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
                   request_id=self.fields.get("request_id"))
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
        if self.messages == 0 or ((self.scanner is not None or self.buffered_response) and not self.response_ended):
            # The stream ended before the service saw the whole exchange (Envoy timed out or gave up before the
            # first message arrived; the upstream reset, the client left or a timeout cut the response).
            self.fields["incomplete"] = True
        self.fields["duration_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        if self.checks is not None:
            self.fields.update(self.checks.ctx.fields)
        audit.emit(self.fields, self.verdict)
        if self.checks is None:
            return None
        return self.checks.finish(self.fields.get("usage") or {}, self.response_ended and "code" not in self.fields)

    # ---- request ---------------------------------------------------------------------------------------
    def _on_request_headers(self, msg: Any) -> pb.ProcessingResponse:
        self.headers = envoy.header_map(msg.headers)
        path = self.headers.get(":path", "/")
        method = self.headers.get(":method", "")
        self.fields.update(request_id=self.headers.get("x-request-id", ""), method=method, path=path.split("?")[0])
        self.shape = shapes.for_path(path) if method == "POST" else None
        if self.shape is None:
            if self.settings.unknown_paths == "deny":
                raise PolicyDenied("this path is not an LLM API the gateway governs", code="unknown_path")
            self.fields["decision"] = "pass"
            return envoy.headers_reply("request", mode=envoy.pass_through_mode())
        self.fields["shape"] = self.shape.name
        if self.headers.get("content-encoding", "identity").strip().lower() not in ("identity", ""):
            raise UnsupportedEncoding("compressed request bodies cannot be inspected; send them uncompressed "
                                      "(content-encoding: identity)")
        if msg.end_of_stream:
            raise MalformedRequest("the request has no body")
        return envoy.headers_reply("request", set_headers=[("accept-encoding", "identity")],
                                   mode=self._skip_unneeded_phases(path))

    def _skip_unneeded_phases(self, path: str) -> pb.ProcessingMode | None:
        """Each ext_proc message costs ~100 µs: when no rule can apply to a direction (whatever the model),
        tell Envoy not to send its phases. Usage tracking needs the request body."""
        assert self.shape is not None
        exchange = Exchange(path.split("?")[0], self.shape.name, None, self.headers)
        response_rules = self.policy.rules_for("response", exchange, model_known=False)
        checks = self.policy.checks_for(exchange, model_known=False)  # a check may need the body's model
        # The body names the model: rules scoped by model need it, and usage tracking may rewrite it.
        request = bool(self.policy.rules_for("request", exchange, model_known=False)) or bool(checks) \
            or self.settings.track_stream_usage or _limits_set(self.settings.limits) \
            or any(not rule.models.any for rule in response_rules)
        response = bool(response_rules) or needs_response(checks)
        if request and response:
            return None
        if not request:
            self.response_rules = response_rules
        self.fields["skipped_phases"] = [d for d, needed in (("request", request), ("response", response))
                                         if not needed]
        return envoy.phases_mode(request_body=request, response=response)

    def _on_request_body(self, msg: Any) -> pb.ProcessingResponse:
        assert self.shape is not None
        body = msg.body
        self.large_body = len(body) > LARGE_BODY_BYTES
        if len(body) > self.settings.max_request_bytes:
            raise PayloadTooLarge(f"request body is larger than {self.settings.max_request_bytes} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MalformedRequest("request body is not valid JSON") from None
        parsed = self.shape.parse_request(doc)
        exchange = Exchange(self.fields["path"], self.shape.name, parsed.model, self.headers)
        self.fields.update(model=parsed.model, stream=parsed.stream)
        clamped = limits.enforce(self.settings.limits, self.shape, parsed)
        check_rules = self.policy.checks_for(exchange)
        if check_rules:
            ctx = CheckContext(exchange, self.shape, self.headers, self.verdict, parsed)
            self.checks = ExchangeChecks(check_rules, ctx)
            return self._request_checks_then_rules(parsed, clamped)
        if self._runs_models(exchange):
            return asyncio.to_thread(self._request_rules, parsed, exchange, clamped)
        return self._request_rules(parsed, exchange, clamped)

    def _runs_models(self, exchange: Exchange) -> bool:
        """A request rule runs a model (milliseconds per text): scan in a worker thread, as for large bodies."""
        return any(rule.detector.blocking for rule in self.policy.rules_for("request", exchange))

    async def _request_checks_then_rules(self, parsed: Any, clamped: bool) -> pb.ProcessingResponse:
        assert self.checks is not None and self.shape is not None
        await self.checks.on_request()
        # A check may have rewritten the model (an alias): rules match on the model that is sent on.
        exchange = Exchange(self.fields["path"], self.shape.name, parsed.model, self.headers)
        self.fields["model"] = parsed.model
        self.checks.ctx.exchange = exchange
        if self.large_body or self._runs_models(exchange):  # scan in a thread, keep the event loop free
            return await asyncio.to_thread(self._request_rules, parsed, exchange, clamped or self.checks.ctx.changed)
        return self._request_rules(parsed, exchange, clamped or self.checks.ctx.changed)

    def _request_rules(self, parsed: Any, exchange: Exchange, changed: bool) -> pb.ProcessingResponse:
        assert self.shape is not None
        doc = parsed.doc
        self.response_rules = self.policy.rules_for("response", exchange)
        if self.checks is not None and self.checks.ctx.response_rules:
            self.response_rules = (*self.response_rules, *self.checks.ctx.response_rules)
        changed = self._apply_rules(self.policy.rules_for("request", exchange), parsed.segments, doc,
                                    "request") or changed
        if self.settings.track_stream_usage and self.shape.ask_stream_usage(doc):
            self.asked_for_usage = changed = True
        if not changed:
            return envoy.body_reply("request", metadata=self._metadata()) if self.verdict.hits \
                else CONTINUE_REQUEST_BODY
        new_body = _dumps(doc, MalformedRequest("request body is nested too deeply to be rewritten"))
        return envoy.body_reply("request", body=new_body, set_headers=[("content-length", str(len(new_body)))],
                                metadata=self._metadata())

    def _apply_rules(self, rules: tuple, segments: list, doc: Any, direction: str) -> bool:
        """Scan segments, raise on deny, redact in place in `doc`; True if the document changed."""
        found = scan_segments(rules, segments, direction, self.budget, self.settings.normalize)
        hits = [hit for _, hit in found]
        self.verdict.hits.extend(hits)
        raise_if_denied(hits)
        changed = False
        for index, segment in enumerate(segments):
            spans = redaction_spans([hit for i, hit in found if i == index])
            if spans:
                self.shape.write_text(doc, segment.locator, apply_spans(segment.text, merge_spans(spans)))
                changed = True
        return changed

    # ---- response --------------------------------------------------------------------------------------
    def _on_response_headers(self, msg: Any) -> pb.ProcessingResponse:
        headers = envoy.header_map(msg.headers)
        status = int(headers.get(":status", "0") or 0)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        self.fields["status"] = status
        annotate = [(self.settings.annotate_header, self._annotation())]
        if self.checks is not None:
            self.checks.ctx.response_headers = headers
        wanted = bool(self.response_rules) or (self.checks is not None and self.checks.needs_response)
        inspect = self.shape is not None and wanted and 200 <= status < 300 and not msg.end_of_stream
        if not inspect:
            return envoy.headers_reply("response", set_headers=annotate, mode=envoy.response_mode(envoy.NONE))
        if headers.get("content-encoding", "identity") not in ("identity", ""):
            raise PolicyUnavailable("the upstream response is content-encoded and cannot be inspected",
                                    code="response_encoded")
        framing = FRAMINGS.get(content_type)
        if framing is not None:
            self.scanner = StreamScanner(self.shape, framing, self.response_rules,
                                         self.settings.max_stream_held_bytes, self.settings.on_stream_limit,
                                         self.settings.max_response_bytes, strip_usage=self.asked_for_usage,
                                         normalized=self.settings.normalize,
                                         **(self.checks.scanner_hooks() if self.checks else {}))
            self.fields["response_mode"] = "streamed"
            return envoy.headers_reply("response", set_headers=annotate, remove=("content-length",),
                                       mode=envoy.response_mode(envoy.STREAMED))
        if is_json_media(content_type):
            self.buffered_response = True
            self.fields["response_mode"] = "buffered"
            return envoy.headers_reply("response", set_headers=annotate, mode=envoy.response_mode(envoy.BUFFERED))
        return envoy.headers_reply("response", set_headers=annotate, mode=envoy.response_mode(envoy.NONE))

    def _on_response_body(self, msg: Any) -> pb.ProcessingResponse:
        self.response_ended = self.response_ended or msg.end_of_stream
        if self.scanner is not None:
            chunk = msg.body
            out = self.scanner.finish(chunk) if msg.end_of_stream else self.scanner.push(chunk)
            return CONTINUE_RESPONSE_BODY if out == chunk else envoy.body_reply("response", body=out)
        if self.buffered_response:
            return self._on_buffered_response(msg.body)
        return CONTINUE_RESPONSE_BODY

    def _on_buffered_response(self, body: bytes) -> pb.ProcessingResponse:
        assert self.shape is not None
        if len(body) > self.settings.max_response_bytes:
            raise PayloadTooLarge(f"response body is larger than {self.settings.max_response_bytes} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            metrics.ERRORS.labels(kind="response_not_json").inc()
            return CONTINUE_RESPONSE_BODY
        self._record_usage(self.shape.usage_of(doc))
        if self.checks is not None:
            self.checks.on_response_doc(doc)
        segments = self.shape.response_segments(doc)
        changed = self._apply_rules(self.response_rules, segments, doc, "response")
        annotate = [(self.settings.annotate_header, self._annotation())]
        if not changed:
            return envoy.body_reply("response", set_headers=annotate, metadata=self._metadata())
        new_body = _dumps(doc, PolicyUnavailable("response body is nested too deeply to be rewritten",
                                                 code="response_unrewritable"))
        return envoy.body_reply("response", body=new_body, metadata=self._metadata(),
                                set_headers=[*annotate, ("content-length", str(len(new_body)))])

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
        header = f"{self.fields['decision']}; code={exc.code}" + (f"; rules={','.join(exc.rules)}" if exc.rules else "")
        headers = [(self.settings.annotate_header, header)]
        if getattr(exc, "retry_after", None) is not None:
            headers.append(("retry-after", str(max(1, int(exc.retry_after)))))
        return envoy.immediate_reply(exc.status, body, set_headers=headers,
                                     details=f"llm_policy_{exc.code}", metadata=self._metadata())

    def _record_error(self, exc: GatewayError, after_stream_start: bool) -> None:
        self.fields.update(
            decision=DECISION_OF_ERROR.get(type(exc), "deny" if exc.status in (403, 429) else "error"),
            code=exc.code, reason=exc.message, status_sent=None if after_stream_start else exc.status,
        )
        if after_stream_start:
            self.fields["ended_stream_with_error"] = True

    def _record_usage(self, usage: dict[str, int] | None) -> None:
        if usage:
            self.fields["usage"] = usage

    def _error_shape(self) -> Shape:
        return self.shape or shapes.all_shapes()["openai_chat"]

    def _annotation(self) -> str:
        parts = [self.verdict.decision]
        if self.verdict.would:
            parts.append("would=" + ",".join(self.verdict.would))
        if self.verdict.hits:
            parts.append("rules=" + ",".join(self.verdict.rule_ids()))
        return "; ".join(parts)

    def _metadata(self) -> dict[str, Any]:
        return {"decision": self.fields.get("decision") or self.verdict.decision,
                "rules": ",".join(self.verdict.rule_ids()), "shape": self.fields.get("shape", ""),
                "model": self.fields.get("model") or "", "policy": self.fields["policy"]}


def _dumps(doc: Any, too_deep: GatewayError) -> bytes:
    """Serialise a rewritten document. orjson reads 1024 levels of nesting but writes only 254: a deeper
    document that had to change cannot be sent on, so it is refused with `too_deep`."""
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        raise too_deep from None


def _limits_set(limits: Any) -> bool:
    return any(value is not None for value in (limits.max_messages, limits.max_prompt_tokens,
                                               limits.max_output_tokens))


def is_json_media(content_type: str) -> bool:
    """Whether a Content-Type value (parameters allowed) is JSON: such responses are buffered and inspected."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")

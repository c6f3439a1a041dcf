"""One Session per ext_proc gRPC stream (one HTTP exchange): the only place that knows the message order.

request headers -> request body (BUFFERED) -> response headers (choose NONE / STREAMED / BUFFERED per
response) -> response body. Every handler returns exactly one reply of the matching kind. The session holds
the policy snapshot it started with, so a reload never mixes two rule sets inside one exchange.
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from urllib.parse import quote, unquote_plus
from collections.abc import Awaitable, Coroutine
from typing import Any

import orjson

from extproc import audit, canonical_json, content_coding, conversation, document, envoy, limits, logs, metrics, pb, shapes
from extproc.checks.context import CheckContext
from extproc.checks.runner import ExchangeChecks, needs_response
from extproc.errors import (
    GatewayError,
    MalformedRequest,
    PayloadTooLarge,
    PolicyDenied,
    PolicyUnavailable,
    UnsupportedEncoding,
)
from extproc.envoy_edge import LOCAL_REPLY_MARKER
from extproc.framing import sniff
from extproc.normalize import Budget
from extproc.policy.compile import CompiledPolicy, Exchange
from extproc.policy.engine import Verdict, decide, scan_segments
from extproc.redact import redacted_pieces
from extproc.model import Segment
from extproc.shapes.base import Shape
from extproc.shapes.generic_json import NAME as GENERIC
from extproc.stream_scan import StreamScanner
from extproc.work_budget import WorkBudget

_log = logs.get("extproc.session")
CONTINUE_REQUEST_BODY = envoy.body_reply("request")
CONTINUE_RESPONSE_BODY = envoy.body_reply("response")
LARGE_BODY_BYTES = 256 * 1024  # bodies scanned off the event loop (the server also asks Envoy for more time)
_MESSAGE_TIMERS: dict[str, Any] = {}  # histogram children by phase, looked up once
FRAMINGS = {"text/event-stream": "sse", "application/x-ndjson": "ndjson", "application/jsonl": "ndjson"}
class Phase(StrEnum):
    """The ext_proc message kinds (the `request` oneof of ProcessingRequest)."""

    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"
    REQUEST_TRAILERS = "request_trailers"
    RESPONSE_TRAILERS = "response_trailers"


NOT_JSON = object()
QUERY_LOCATOR = ("__query__",)
DECISION_OF_ERROR = {PolicyDenied: "deny", MalformedRequest: "reject", PayloadTooLarge: "reject",
                     UnsupportedEncoding: "reject"}


class Session:
    def __init__(self, policy: CompiledPolicy, shadow: bool = False) -> None:
        self.policy = policy
        self.shadow = shadow  # a candidate policy's session: no audit record, no metrics, no end-of-exchange work
        self.shadow_of: Any = None  # the Shadow observing this exchange with a candidate policy, if any
        self.settings = policy.settings
        self.verdict = Verdict()
        self.fields: dict[str, Any] = {"policy": policy.digest[:12]}
        self.headers: dict[str, str] = {}
        self.shape: Shape | None = None
        self.response_rules: tuple = ()
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
        if self.messages == 0 or ((self.streamed_response or self.buffered_response) and not self.response_ended):
            # The stream ended before the service saw the whole exchange (Envoy timed out or gave up before the
            # first message arrived; the upstream reset, the client left or a timeout cut the response).
            self.fields["incomplete"] = True
            if self.buffered_response and "code" not in self.fields:
                # Envoy never handed over the body it was to buffer (over its buffer limit, upstream reset):
                # the client got Envoy's own error, not an inspected answer, so the record must not say allow.
                self.fields.update(decision="error", code="response_not_inspected")
        self.fields["duration_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        if self.checks is not None:
            self.fields.update(self.checks.ctx.fields)
        if self.shadow:
            return None
        if any(hit.rule.capture for hit in self.verdict.hits):
            self.fields["exchange"] = self._recorded_exchange()
        if self.shadow_of is not None:
            self.fields["shadow"] = self.shadow_of.compare(self.fields.get("decision") or self.verdict.decision,
                                                           self.verdict.rule_ids())
        audit.emit(self.fields, self.verdict, self.settings.audit_hits_per_rule)
        if self.checks is None:
            return None
        return self.checks.finish(self.fields.get("usage") or {}, self.response_ended and "code" not in self.fields)

    # ---- request ---------------------------------------------------------------------------------------
    def _on_request_headers(self, msg: Any) -> pb.ProcessingResponse:
        self.headers = envoy.header_map(msg.headers)
        path = self.headers.get(":path", "/")
        method = self.headers.get(":method", "")
        self.fields.update(request_id=self.headers.get("x-request-id", ""), method=method, path=path.split("?")[0])
        self.shape = shapes.for_path(path)
        if msg.end_of_stream and (self.shape is None or method != "POST"):
            return self._unknown_path(path, method)  # no body: nothing a model could read
        # A body on any path may be JSON a model server reads: it is read before anything is decided.
        self.shape = self.shape or shapes.all_shapes()[GENERIC]
        self.fields["shape"] = self.shape.name
        if self.headers.get("content-encoding", "identity").strip().lower() not in ("identity", ""):
            raise UnsupportedEncoding("compressed request bodies cannot be inspected; send them uncompressed "
                                      "(content-encoding: identity)")
        if msg.end_of_stream:
            raise MalformedRequest("the request has no body")
        return envoy.headers_reply("request", set_headers=[("accept-encoding", "identity")],
                                   mode=self._skip_unneeded_phases(path))

    def _unknown_path(self, path: str, method: str) -> pb.ProcessingResponse:
        """A request with no JSON body for a model: `unknown_paths` decides; read-only metadata that chat UIs
        need (model lists, versions) always passes."""
        self.shape = None
        self.fields.pop("shape", None)
        if self.settings.unknown_paths == "deny" and not shapes.is_metadata_path(method, path):
            raise PolicyDenied("this path is not an LLM API the gateway governs", code="unknown_path")
        self.fields["decision"] = "pass"
        return envoy.headers_reply("request", mode=envoy.pass_through_mode())

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
        doc = self._read_request_json(body)
        self.raw_request = body  # recorded for `policy diff` only when a `capture: true` rule hits
        if doc is NOT_JSON:
            return self._non_json_body()
        parsed = self.shape.parse_request(doc)
        exchange = Exchange(self.fields["path"], self.shape.name, parsed.model, self.headers)
        self.fields.update(model=parsed.model, stream=parsed.stream)
        clamped = limits.enforce(self.settings.limits, self.shape, parsed)
        check_rules = self.policy.checks_for(exchange)
        if check_rules:
            ctx = CheckContext(exchange, self.shape, self.headers, self.verdict, parsed)
            self.checks = ExchangeChecks(check_rules, ctx)
            return self._request_checks_then_rules(parsed, clamped)
        return self._request_rules(parsed, exchange, clamped)

    def _read_request_json(self, body: bytes) -> Any:
        """The body's one canonical reading; NOT_JSON for a non-JSON body on a path no shape serves."""
        assert self.shape is not None
        try:
            return canonical_json.loads(body)
        except canonical_json.Ambiguous as exc:
            raise MalformedRequest(f"request body is ambiguous JSON: {exc}") from None
        except ValueError:
            if self.shape.name == GENERIC and not _looks_like_json(body):
                return NOT_JSON
            raise MalformedRequest("request body is not valid JSON") from None

    def _non_json_body(self) -> pb.ProcessingResponse:
        """Not JSON, on a path no shape serves: not LLM traffic, so `unknown_paths` applies."""
        self.shape = None
        self.fields.pop("shape", None)
        if self.settings.unknown_paths == "deny":
            raise PolicyDenied("this path is not an LLM API the gateway governs", code="unknown_path")
        self.fields["decision"] = "pass"
        return envoy.body_reply("request", mode=envoy.pass_through_mode())

    async def _request_checks_then_rules(self, parsed: Any, clamped: bool) -> pb.ProcessingResponse:
        assert self.checks is not None and self.shape is not None
        await self.checks.on_request()
        # A check may have rewritten the model (an alias): rules match on the model that is sent on.
        exchange = Exchange(self.fields["path"], self.shape.name, parsed.model, self.headers)
        self.fields["model"] = parsed.model
        self.checks.ctx.exchange = exchange
        if self.large_body:  # as the server does for big bodies: scan in a thread, keep the event loop free
            return await asyncio.to_thread(self._request_rules, parsed, exchange, clamped or self.checks.ctx.changed)
        return self._request_rules(parsed, exchange, clamped or self.checks.ctx.changed)

    def _request_rules(self, parsed: Any, exchange: Exchange, changed: bool) -> pb.ProcessingResponse:
        assert self.shape is not None
        doc = parsed.doc
        self.response_rules = self.policy.rules_for("response", exchange)
        if self.checks is not None and self.checks.ctx.response_rules:
            self.response_rules = (*self.response_rules, *self.checks.ctx.response_rules)
        segments = document.complete(doc, parsed.segments)
        path, _, query = self.headers.get(":path", "").partition("?")
        if query:  # the query string reaches the server too
            segments.append(Segment(unquote_plus(query), document.OTHER, QUERY_LOCATOR))
        changed = self._apply_rules(self.policy.rules_for("request", exchange), segments, doc,
                                    "request") or changed
        if self.settings.track_stream_usage and self.shape.ask_stream_usage(doc):
            self.asked_for_usage = changed = True
        new_path = [(":path", f"{path}?{quote(self.new_query, safe='=&')}")] if self.new_query is not None else []
        if not changed:
            if new_path:
                return envoy.body_reply("request", set_headers=new_path, metadata=self._metadata())
            return envoy.body_reply("request", metadata=self._metadata()) if self.verdict.hits \
                else CONTINUE_REQUEST_BODY
        new_body = _dumps(doc, MalformedRequest("request body is nested too deeply to be rewritten"))
        return envoy.body_reply("request", body=new_body, metadata=self._metadata(),
                                set_headers=[("content-length", str(len(new_body))), *new_path])

    def _apply_rules(self, rules: tuple, segments: list, doc: Any, direction: str) -> bool:
        """Scan segments, raise on deny, redact in place in `doc`; True if the document changed."""
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

    # ---- response --------------------------------------------------------------------------------------
    def _on_response_headers(self, msg: Any) -> pb.ProcessingResponse:
        headers = envoy.header_map(msg.headers)
        status = int(headers.get(":status", "0") or 0)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        self.fields["status"] = status
        annotate = [(self.settings.annotate_header, self._annotation())]
        if self.checks is not None:
            self.checks.ctx.response_headers = headers
        marker = headers.get(LOCAL_REPLY_MARKER)
        if marker is not None:  # Envoy's own reply (413, 408, 503, ...): no upstream answer was inspected
            code = marker.partition("code=")[2].strip() or "gateway_error"
            self.fields.update(decision="error", code=code, local_reply=True)
            return envoy.headers_reply("response", mode=envoy.response_mode(envoy.NONE))
        wanted = bool(self.response_rules) or (self.checks is not None and self.checks.needs_response)
        # Error bodies are inspected too: they echo prompts.
        if self.shape is None or not wanted or msg.end_of_stream:
            return envoy.headers_reply("response", set_headers=annotate, mode=envoy.response_mode(envoy.NONE))
        remove = self._response_decoding(headers.get("content-encoding", "identity"))
        if content_type in FRAMINGS or self.fields.get("stream"):
            self.streamed_response = True  # the scanner's framing is chosen by the first bytes
            self.fields["response_mode"] = "streamed"
            return envoy.headers_reply("response", set_headers=annotate, remove=("content-length", *remove),
                                       mode=envoy.response_mode(envoy.STREAMED))
        self.buffered_response = True  # whatever the label says: JSON, SSE or text is found in the bytes
        self.fields["response_mode"] = "buffered"
        return envoy.headers_reply("response", set_headers=annotate, remove=remove,
                                   mode=envoy.response_mode(envoy.BUFFERED))

    def _response_decoding(self, encoding: str) -> tuple[str, ...]:
        """Decode a compressed response the policy must read (the client then gets it as identity), or
        refuse it: a body is never passed on unread."""
        self.decoder = content_coding.decoder_for(encoding, self.settings.max_response_bytes)
        if self.decoder is None:
            raise PolicyUnavailable(f"the upstream response is content-encoded ({encoding.strip()[:20]}) in a "
                                    "way the gateway cannot read", code="response_encoded")
        return () if self.decoder.identity else ("content-encoding", "content-length")

    def _new_scanner(self, framing: str) -> StreamScanner:
        assert self.shape is not None
        return StreamScanner(self.shape, framing, self.response_rules,
                             self.settings.max_stream_held_bytes, self.settings.on_stream_limit,
                             self.settings.max_response_bytes, strip_usage=self.asked_for_usage,
                             normalized=self.settings.normalize, notice=self.settings.stream_deny_notice,
                             work=self.work,
                             **(self.checks.scanner_hooks() if self.checks else {}))

    def _on_response_body(self, msg: Any) -> pb.ProcessingResponse:
        self.response_ended = self.response_ended or msg.end_of_stream
        body = self.decoder.feed(msg.body, msg.end_of_stream) if self.decoder is not None else msg.body
        if self.buffered_response:
            return self._on_buffered_response(body)
        if not self.streamed_response:
            return CONTINUE_RESPONSE_BODY
        if self.scanner is None:
            self.sniffed += body
            framing = sniff(bytes(self.sniffed), final=msg.end_of_stream)
            if framing is None:
                return envoy.body_reply("response", body=b"")  # too few bytes to tell the framing yet
            self.scanner, body, self.sniffed = self._new_scanner(framing), bytes(self.sniffed), bytearray()
        if msg.end_of_stream:  # the stream's decision reaches Envoy's access log with the last reply
            out = self.scanner.finish(body)
            return envoy.body_reply("response", body=None if out == msg.body else out,
                                    metadata=self._stream_metadata())
        out = self.scanner.push(body)
        return CONTINUE_RESPONSE_BODY if out == msg.body else envoy.body_reply("response", body=out)

    def _stream_metadata(self) -> dict[str, Any]:
        assert self.scanner is not None
        hits = [*self.verdict.hits, *self.scanner.hits]
        error = self.scanner.error
        decision = Verdict(hits).decision if error is None else \
            DECISION_OF_ERROR.get(type(error), "deny" if error.status in (403, 429) else "error")
        return {**self._metadata(), "decision": decision, "rules": ",".join(sorted({h.rule.id for h in hits}))}

    def _on_buffered_response(self, body: bytes) -> pb.ProcessingResponse:
        assert self.shape is not None
        self.raw_response = body
        if len(body) > self.settings.max_response_bytes:
            raise PayloadTooLarge(f"response body is larger than {self.settings.max_response_bytes} bytes")
        try:
            doc = canonical_json.loads(body)
        except ValueError:
            return self._scan_unframed_body(body)
        if not isinstance(doc, (dict, list)):
            return self._scan_unframed_body(body)
        self._record_usage(self.shape.usage_of(doc))
        if self.checks is not None:
            self.checks.on_response_doc(doc)
        segments = document.complete(doc, self.shape.response_segments(doc))
        changed = self._apply_rules(self.response_rules, segments, doc, "response")
        annotate = [(self.settings.annotate_header, self._annotation())]
        if not changed and self.decoder is None:
            return envoy.body_reply("response", set_headers=annotate, metadata=self._metadata())
        new_body = _dumps(doc, PolicyUnavailable("response body is nested too deeply to be rewritten",
                                                 code="response_unrewritable")) if changed else body
        return envoy.body_reply("response", body=new_body, metadata=self._metadata(),
                                set_headers=[*annotate, ("content-length", str(len(new_body)))])

    def _scan_unframed_body(self, body: bytes) -> pb.ProcessingResponse:
        """A complete body that is not one JSON document (SSE or JSON lines under any label, plain text,
        HTML, JSON another parser could read differently): scanned by the stream scanner in one go."""
        scanner = self._new_scanner(sniff(body, final=True) or "text")
        self.fields["response_mode"] = "buffered_text"
        out = scanner.finish(body)
        self.verdict.hits.extend(scanner.hits)
        self._record_usage(scanner.usage)
        if scanner.error is not None:
            raise scanner.error  # nothing was sent yet: the client gets the error with its status
        annotate = [(self.settings.annotate_header, self._annotation())]
        if out == body and self.decoder is None:
            return envoy.body_reply("response", set_headers=annotate, metadata=self._metadata())
        return envoy.body_reply("response", body=out, metadata=self._metadata(),
                                set_headers=[*annotate, ("content-length", str(len(out)))])

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

    def _recorded_exchange(self) -> dict[str, Any]:
        """The exchange as `policy diff --traffic` replays it: path, request and buffered response documents
        as they arrived (before any redaction). Only for exchanges where a `capture: true` rule hit."""
        exchange: dict[str, Any] = {"path": self.fields.get("path", "")}
        for field, raw in (("request", self.raw_request), ("response", self.raw_response)):
            try:
                exchange[field] = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                exchange[field] = None
        return {k: v for k, v in exchange.items() if v is not None}

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
    """Serialise a rewritten document, numbers in their original spelling. orjson writes only 254 levels of
    nesting: a deeper document that had to change cannot be sent on, so it is refused with `too_deep`."""
    try:
        return canonical_json.dumps(doc)
    except orjson.JSONEncodeError:
        raise too_deep from None


def _limits_set(limits: Any) -> bool:
    return any(value is not None for value in (limits.max_messages, limits.max_prompt_tokens,
                                               limits.max_output_tokens))


def _looks_like_json(body: bytes) -> bool:
    """Whether a body that failed to parse was meant as JSON (a model server would try to read it)."""
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    return start in (b"{", b"[", b'"')


def is_json_media(content_type: str) -> bool:
    """Whether a Content-Type value (parameters allowed) is JSON: such responses are buffered and inspected."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")

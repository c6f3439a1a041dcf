"""The request side of a Session: which requests are LLM exchanges, the one canonical reading of their body,
limits and checks, then every string scanned and the decision applied before anything reaches the upstream.
A mixin of `extproc.session.Session`, which owns the state these methods use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote, unquote_plus

from extproc import canonical_json, document, envoy, limits, pb, shapes
from extproc.checks.context import CheckContext
from extproc.checks.runner import ExchangeChecks, needs_response
from extproc.errors import MalformedRequest, PayloadTooLarge, PolicyDenied, UnsupportedEncoding
from extproc.model import Segment
from extproc.policy.compile import Exchange
from extproc.response_phase import dumps_or
from extproc.session_state import QUERY_LOCATOR, SessionState
from extproc.shapes.generic_json import NAME as GENERIC

CONTINUE_REQUEST_BODY = envoy.body_reply("request")
LARGE_BODY_BYTES = 256 * 1024  # bodies scanned off the event loop (the server also asks Envoy for more time)
NOT_JSON = object()


class RequestPhase(SessionState):
    """Request headers and body handlers of a Session."""

    def _on_request_headers(self, msg: Any) -> pb.ProcessingResponse:
        self.headers = envoy.header_map(msg.headers)
        path = self.headers.get(":path", "/")
        method = self.headers.get(":method", "")
        record = self.record
        record.request_id, record.method, record.path = self.headers.get("x-request-id", ""), method, path.split("?")[0]
        self.shape = shapes.for_path(path)
        if msg.end_of_stream and (self.shape is None or method != "POST"):
            return self._unknown_path(path, method)  # no body: nothing a model could read
        # A body on any path may be JSON a model server reads: it is read before anything is decided.
        self.shape = self.shape or shapes.all_shapes()[GENERIC]
        self.record.shape = self.shape.name
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
        self._not_llm_traffic(allowed=shapes.is_metadata_path(method, path))
        return envoy.headers_reply("request", mode=envoy.pass_through_mode())

    def _not_llm_traffic(self, allowed: bool) -> None:
        """`unknown_paths` decides what carries no JSON for a model: deny refuses it (unless `allowed`), allow
        passes it with no further phases."""
        self.shape = None
        self.record.shape = None
        if self.settings.unknown_paths == "deny" and not allowed:
            raise PolicyDenied("this path is not an LLM API the gateway governs", code="unknown_path")
        self.record.decision = "pass"

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
        self.record.skipped_phases = [d for d, needed in (("request", request), ("response", response))
                                         if not needed]
        return envoy.phases_mode(request_body=request, response=response)

    def _on_request_body(self, msg: Any) -> pb.ProcessingResponse | Awaitable[pb.ProcessingResponse]:
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
        exchange = Exchange(self.record.path or "", self.shape.name, parsed.model, self.headers)
        self.record.model, self.record.stream = parsed.model, parsed.stream
        clamped = limits.enforce(self.settings.limits, self.shape, parsed)
        check_rules = self.policy.checks_for(exchange)
        if check_rules:
            ctx = CheckContext(exchange, self.shape, self.headers, self.verdict.hits, parsed)
            self.checks = ExchangeChecks(check_rules, ctx)
            return self._request_checks_then_rules(parsed, clamped)
        if self._runs_models(exchange):
            return asyncio.to_thread(self._request_rules, parsed, exchange, clamped)
        return self._request_rules(parsed, exchange, clamped)

    def _runs_models(self, exchange: Exchange) -> bool:
        """A request rule runs a model (milliseconds per text): scan in a worker thread, as for large bodies.
        A shadow session answers synchronously: its replies are never awaited."""
        return not self.shadow and any(rule.detector.blocking for rule in self.policy.rules_for("request", exchange))

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
        self._not_llm_traffic(allowed=False)
        return envoy.body_reply("request", mode=envoy.pass_through_mode())

    async def _request_checks_then_rules(self, parsed: Any, clamped: bool) -> pb.ProcessingResponse:
        assert self.checks is not None and self.shape is not None
        await self.checks.on_request()
        # A check may have rewritten the model (an alias): rules match on the model that is sent on.
        exchange = Exchange(self.record.path or "", self.shape.name, parsed.model, self.headers)
        self.record.model = parsed.model
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
        new_body = dumps_or(doc, MalformedRequest("request body is nested too deeply to be rewritten"))
        return envoy.body_reply("request", body=new_body, metadata=self._metadata(),
                                set_headers=[("content-length", str(len(new_body))), *new_path])



def _limits_set(limits: Any) -> bool:
    return any(value is not None for value in (limits.max_messages, limits.max_prompt_tokens,
                                               limits.max_output_tokens))


def _looks_like_json(body: bytes) -> bool:
    """Whether a body that failed to parse was meant as JSON (a model server would try to read it)."""
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    return start in (b"{", b"[", b'"')

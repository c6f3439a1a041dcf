"""The response side of a Session: responses are framed by their bytes, whatever their label or status;
compressed ones are decoded or refused; JSON documents, SSE, JSON lines and plain text are all scanned, streams
with hold-back. A mixin of `extproc.session.Session`, which owns the state these methods use."""

from __future__ import annotations

from typing import Any

import orjson

from extproc import canonical_json, content_coding, document, envoy, pb
from extproc.envoy_edge import LOCAL_REPLY_MARKER
from extproc.errors import GatewayError, PayloadTooLarge, PolicyUnavailable, decision_of
from extproc.framing import sniff
from extproc.policy.engine import Verdict
from extproc.session_state import SessionState
from extproc.stream_scan import StreamScanner

CONTINUE_RESPONSE_BODY = envoy.body_reply("response")
FRAMINGS = {"text/event-stream": "sse", "application/x-ndjson": "ndjson", "application/jsonl": "ndjson"}


class ResponsePhase(SessionState):
    """Response headers and body handlers of a Session."""

    def _on_response_headers(self, msg: Any) -> pb.ProcessingResponse:
        headers = envoy.header_map(msg.headers)
        status = int(headers.get(":status", "0") or 0)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        self.record.status = status
        annotate = [(self.settings.annotate_header, self._annotation())]
        if self.checks is not None:
            self.checks.ctx.response_headers = headers
        marker = headers.get(LOCAL_REPLY_MARKER)
        if marker is not None:  # Envoy's own reply (413, 408, 503, ...): no upstream answer was inspected
            code = marker.partition("code=")[2].strip() or "gateway_error"
            self.record.decision, self.record.code, self.record.local_reply = "error", code, True
            return envoy.headers_reply("response", mode=envoy.response_mode(envoy.NONE))
        wanted = bool(self.response_rules) or (self.checks is not None and self.checks.needs_response)
        # Error bodies are inspected too: they echo prompts.
        if self.shape is None or not wanted or msg.end_of_stream:
            return envoy.headers_reply("response", set_headers=annotate, mode=envoy.response_mode(envoy.NONE))
        remove = self._response_decoding(headers.get("content-encoding", "identity"))
        if content_type in FRAMINGS or self.record.stream:
            self.streamed_response = True  # the scanner's framing is chosen by the first bytes
            self.record.response_mode = "streamed"
            return envoy.headers_reply("response", set_headers=annotate, remove=("content-length", *remove),
                                       mode=envoy.response_mode(envoy.STREAMED))
        self.buffered_response = True  # whatever the label says: JSON, SSE or text is found in the bytes
        self.record.response_mode = "buffered"
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
            decision_of(error)
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
        new_body = dumps_or(doc, PolicyUnavailable("response body is nested too deeply to be rewritten",
                                                 code="response_unrewritable")) if changed else body
        return envoy.body_reply("response", body=new_body, metadata=self._metadata(),
                                set_headers=[*annotate, ("content-length", str(len(new_body)))])

    def _scan_unframed_body(self, body: bytes) -> pb.ProcessingResponse:
        """A complete body that is not one JSON document (SSE or JSON lines under any label, plain text,
        HTML, JSON another parser could read differently): scanned by the stream scanner in one go."""
        scanner = self._new_scanner(sniff(body, final=True) or "text")
        self.record.response_mode = "buffered_text"
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


def dumps_or(doc: Any, too_deep: GatewayError) -> bytes:
    """Serialise a rewritten document, numbers in their original spelling. orjson writes only 254 levels of
    nesting: a deeper document that had to change cannot be sent on, so it is refused with `too_deep`."""
    try:
        return canonical_json.dumps(doc)
    except orjson.JSONEncodeError:
        raise too_deep from None

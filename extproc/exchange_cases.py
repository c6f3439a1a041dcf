"""`policy test` cases that run a whole exchange through a Session (no Envoy, no gRPC): what checks such as
models, tools and budgets need, since they look at the request's structure, not at one text.

    - name: a floating tag is refused
      exchange:
        path: /api/chat                       # default /v1/chat/completions
        headers: {x-tenant: team-a}           # optional request headers
        request: {model: "llama3:latest", messages: [{role: user, content: hi}]}
        response: {...}                       # optional: a JSON response document (buffered)
        stream: [{...}, {...}]                # optional: streamed events (SSE or NDJSON by the shape)
      expect: deny                            # allow | annotate | redact | deny
      status: 403                             # optional: the status the client gets
      code: model_not_allowed                 # optional: the error code
      request_body: {model: ...}              # optional: fields the rewritten request body must contain
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc import pb, shapes
from extproc.policy.compile import CompiledPolicy
from extproc.session import Session


@dataclass
class ExchangeResult:
    decision: str
    status: int | None = None  # set when the gateway answered itself (deny, error)
    code: str | None = None
    request_body: Any = None  # the body sent upstream when it was rewritten
    client_bytes: bytes = b""  # the response body the client got
    fields: dict[str, Any] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)  # the rules that hit


def run_exchange(policy: CompiledPolicy, case: dict[str, Any]) -> ExchangeResult:
    return asyncio.run(_run(policy, case))


async def _run(policy: CompiledPolicy, case: dict[str, Any]) -> ExchangeResult:
    session = Session(policy)
    path = case.get("path", "/v1/chat/completions")
    result = ExchangeResult("allow")
    try:
        if await _request(session, path, case, result):
            await _response(session, path, case, result)
    finally:
        work = session.finish()
        if work is not None:
            await work
    result.fields = session.record.as_fields()
    result.rules = session.verdict.rule_ids()
    result.decision = session.record.decision or session.verdict.decision
    result.code = result.code or session.record.code
    return result


async def _request(session: Session, path: str, case: dict[str, Any], result: ExchangeResult) -> bool:
    headers = {":method": "POST", ":path": path, ":authority": "policy-test", "content-type": "application/json",
               "x-request-id": "policy-test", **case.get("headers", {})}
    for message in (_headers_message("request_headers", headers),
                    _body_message("request_body", orjson.dumps(case["request"]), True)):
        reply = await _handle(session, message)
        if reply.HasField("immediate_response"):
            result.status = reply.immediate_response.status.code
            return False
        mutation = reply.request_body.response.body_mutation
        if mutation.body:
            result.request_body = orjson.loads(mutation.body)
    return "response" in case or "stream" in case


async def _response(session: Session, path: str, case: dict[str, Any], result: ExchangeResult) -> None:
    shape = shapes.for_path(path)
    streamed = "stream" in case
    framing = "ndjson" if shape is not None and shape.stream_framing == "ndjson" else "sse"
    content_type = ("application/x-ndjson" if framing == "ndjson" else "text/event-stream") if streamed \
        else "application/json"
    await _handle(session, _headers_message("response_headers", {":status": "200", "content-type": content_type}))
    chunks = [_frame(event, framing) for event in case["stream"]] if streamed else [orjson.dumps(case["response"])]
    for number, chunk in enumerate(chunks, 1):
        reply = await _handle(session, _body_message("response_body", chunk, number == len(chunks)))
        if reply.HasField("immediate_response"):
            result.status = reply.immediate_response.status.code
            return
        mutation = reply.response_body.response.body_mutation
        replaced = mutation.HasField("body") or mutation.clear_body
        result.client_bytes += mutation.body if replaced else chunk


def _frame(event: Any, framing: str) -> bytes:
    if framing == "ndjson":
        return orjson.dumps(event) + b"\n"
    if isinstance(event, dict) and set(event) == {"event", "data"}:
        return b"event: " + event["event"].encode() + b"\ndata: " + orjson.dumps(event["data"]) + b"\n\n"
    return b"data: " + (b"[DONE]" if event == "[DONE]" else orjson.dumps(event)) + b"\n\n"


async def _handle(session: Session, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
    reply = session.handle(message)
    return reply if isinstance(reply, pb.ProcessingResponse) else await reply


def _headers_message(kind: str, headers: dict[str, str]) -> pb.ProcessingRequest:
    header_map = pb.HeaderMap(headers=[pb.HeaderValue(key=k, raw_value=str(v).encode()) for k, v in headers.items()])
    return pb.ProcessingRequest(**{kind: pb.HttpHeaders(headers=header_map)})


def _body_message(kind: str, body: bytes, end: bool) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(**{kind: pb.HttpBody(body=body, end_of_stream=end)})

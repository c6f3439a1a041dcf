"""Build ext_proc messages and drive a Session with no gRPC in between."""

from __future__ import annotations

import orjson

from extproc import pb
from extproc.session import Session


def header_map(pairs: dict[str, str]) -> pb.HeaderMap:
    return pb.HeaderMap(headers=[pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])


def request_headers(path: str = "/v1/chat/completions", method: str = "POST", eos: bool = False,
                    extra: dict | None = None) -> pb.ProcessingRequest:
    pairs = {":method": method, ":path": path, ":authority": "gw", "content-type": "application/json",
             "x-request-id": "req-1", **(extra or {})}
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=header_map(pairs), end_of_stream=eos))


def request_body(doc=None, raw: bytes | None = None) -> pb.ProcessingRequest:
    body = raw if raw is not None else orjson.dumps(doc)
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True))


def response_headers(content_type: str = "application/json", status: int = 200,
                     extra: dict | None = None) -> pb.ProcessingRequest:
    pairs = {":status": str(status), "content-type": content_type, **(extra or {})}
    return pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=header_map(pairs)))


def response_body(body: bytes, eos: bool) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=eos))


def chat(text: str, stream: bool = False, model: str = "llama3") -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}], "x_vendor": {"k": 1}}


def set_headers(mutation) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


def start(session: Session, text: str = "hello", stream: bool = False):
    """Run request headers + body; return the body reply."""
    session.handle(request_headers())
    return session.handle(request_body(chat(text, stream)))


async def handle(session: Session, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
    """Session.handle, awaiting the reply when checks made it asynchronous."""
    reply = session.handle(message)
    return reply if isinstance(reply, pb.ProcessingResponse) else await reply

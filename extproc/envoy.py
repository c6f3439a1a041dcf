"""Small pure builders for the ProcessingResponse variants the session sends. upb messages only."""

from __future__ import annotations

from typing import Any

from extproc import pb

OVERWRITE = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
NONE, STREAMED, BUFFERED = pb.ProcessingMode.NONE, pb.ProcessingMode.STREAMED, pb.ProcessingMode.BUFFERED
SKIP = pb.ProcessingMode.SKIP
METADATA_NAMESPACE = "llm.policy"
# The official OpenAI and Anthropic SDKs retry a 429 after its retry-after, however long (the anthropic SDK
# was measured sleeping 1,832 s); `x-should-retry: false` makes them raise at once instead.
LONG_RETRY_SECONDS = 60

Headers = list[tuple[str, str]]


def _mutate_headers(common: Any, set_headers: Headers, remove: tuple[str, ...]) -> None:
    for key, value in set_headers:
        option = common.header_mutation.set_headers.add()
        option.header.key = key
        option.header.raw_value = value.encode()
        option.append_action = OVERWRITE
    if remove:
        common.header_mutation.remove_headers.extend(remove)


def headers_reply(direction: str, *, set_headers: Headers = (), remove: tuple[str, ...] = (),  # type: ignore[assignment]
                  mode: pb.ProcessingMode | None = None, metadata: dict | None = None) -> pb.ProcessingResponse:
    reply = pb.ProcessingResponse()
    headers = reply.request_headers if direction == "request" else reply.response_headers
    headers.SetInParent()
    _mutate_headers(headers.response, set_headers, remove)
    if mode is not None:
        reply.mode_override.CopyFrom(mode)
    if metadata:
        _set_metadata(reply, metadata)
    return reply


def body_reply(direction: str, *, body: bytes | None = None, set_headers: Headers = (),  # type: ignore[assignment]
               metadata: dict | None = None, mode: pb.ProcessingMode | None = None,
               remove: tuple[str, ...] = ()) -> pb.ProcessingResponse:
    """Continue, or replace the body with `body` (b"" clears it)."""
    reply = pb.ProcessingResponse()
    response = reply.request_body if direction == "request" else reply.response_body
    response.SetInParent()
    if body is not None:
        if body:
            response.response.body_mutation.body = body
        else:
            response.response.body_mutation.clear_body = True
    _mutate_headers(response.response, set_headers, remove)
    if mode is not None:
        reply.mode_override.CopyFrom(mode)
    if metadata:
        _set_metadata(reply, metadata)
    return reply


def _set_metadata(reply: pb.ProcessingResponse, metadata: dict) -> None:
    """Flat string values only; written field by field (Struct.update is slow in Python)."""
    fields = reply.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields
    for key, value in metadata.items():
        fields[key].string_value = str(value)


def trailers_reply(direction: str) -> pb.ProcessingResponse:
    reply = pb.ProcessingResponse()
    (reply.request_trailers if direction == "request" else reply.response_trailers).SetInParent()
    return reply


def immediate_reply(status: int, body: bytes, *, content_type: str = "application/json",
                    set_headers: Headers = (), details: str = "", metadata: dict | None = None,  # type: ignore[assignment]
                    ) -> pb.ProcessingResponse:
    reply = pb.ProcessingResponse()
    immediate = reply.immediate_response
    immediate.status.code = status  # type: ignore[assignment]  # the stubs type enum fields as NewType(int)
    immediate.body = body
    immediate.details = details.replace(" ", "_")
    for key, value in [("content-type", content_type), *set_headers, *retry_advice(set_headers)]:
        option = immediate.headers.set_headers.add()
        option.header.key = key
        option.header.raw_value = value.encode()
        option.append_action = OVERWRITE
    if metadata:
        _set_metadata(reply, metadata)
    return reply


def retry_advice(headers: Headers) -> Headers:
    """`x-should-retry: false` when the reply asks the client to wait longer than a minute."""
    waits = [value for key, value in headers if key.lower() == "retry-after" and value.isdigit()]
    return [("x-should-retry", "false")] if waits and int(waits[0]) > LONG_RETRY_SECONDS else []


def response_mode(body_mode: int, header_mode: int | None = None) -> pb.ProcessingMode:
    """A mode override sent from the response-headers phase: only the response side matters there."""
    mode = pb.ProcessingMode(response_body_mode=body_mode)  # type: ignore[arg-type]  # enum values are ints
    if header_mode is not None:
        mode.response_header_mode = header_mode  # type: ignore[assignment]  # enum values are ints
    return mode


def pass_through_mode() -> pb.ProcessingMode:
    """From the request-headers phase: stop processing this exchange (both body modes must be set)."""
    return pb.ProcessingMode(request_body_mode=NONE, response_header_mode=SKIP, response_body_mode=NONE)


def phases_mode(request_body: bool, response: bool) -> pb.ProcessingMode:
    """From the request-headers phase: which later phases Envoy should still send (both body modes are
    always taken from an override, so both are set)."""
    mode = pb.ProcessingMode(request_body_mode=BUFFERED if request_body else NONE)
    if response:
        mode.response_body_mode = STREAMED  # the response-headers reply then picks the real mode
    else:
        mode.response_header_mode = SKIP
        mode.response_body_mode = NONE
    return mode


def header_map(headers: Any) -> dict[str, str]:
    """HeaderMap -> dict with lower-case keys (Envoy sends values in raw_value)."""
    out: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        out[header.key] = value if header.key not in out else out[header.key] + "," + value
    return out

"""A Session fed arbitrary ext_proc message sequences (kinds, order, paths, content types, bodies, end of
stream flags): one ProcessingResponse per message, no exception escapes, finish() completes. Half of the
inputs follow Envoy's message order (request headers, body, response headers, body chunks); for those, an
unexpected exception caught at the session boundary (`extproc_errors_total{kind="internal"}`) is a finding
too (out of order, the session's asserts legitimately fail closed)."""

import asyncio
import glob
import os
from pathlib import Path

import atheris
from _harness import run

with atheris.instrument_imports(include=["extproc"]):
    from extproc import checks, detectors, logs, metrics, pb, shapes
    from extproc.policy.reload import compile_text, default_policy_text
    from extproc.session import Session
    detectors.registry(), checks.registry(), shapes.all_shapes()

RULES = """
  - id: redact-test-secret
    detector: regex
    action: redact
    params: {patterns: [{label: test_secret, pattern: "sk-[A-Za-z0-9]{20,40}", max_length: 43}]}
  - id: redact-secrets
    detector: secrets
    action: redact
  - id: redact-email
    detector: email
    direction: response
    action: redact
"""
POLICIES = [
    compile_text(default_policy_text(), "default"),
    compile_text("version: 1\nsettings: {max_stream_held_bytes: 1024, max_request_bytes: 4096}\nrules:" + RULES,
                 "small limits"),
    compile_text("version: 1\nsettings: {unknown_paths: deny, on_stream_limit: fail_open, max_stream_held_bytes: "
                 "1024, track_stream_usage: true}\nrules:" + RULES, "fail open"),
]
PATHS = sorted({p for shape in shapes.all_shapes().values() for p in shape.paths}) + ["/", "/v1/models", "//x"]
CONTENT_TYPES = ["application/json", "text/event-stream", "application/x-ndjson", "text/plain", "",
                 "text/event-stream; charset=utf-8", "application/json; charset=utf-8"]
KINDS = ["request_headers", "request_body", "response_headers", "response_body", "request_trailers",
         "response_trailers"]
ENVOY_ORDER = ["request_headers", "request_body", "response_headers"] + ["response_body"] * 7
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "golden")
SAMPLES = [Path(path).read_bytes() for path in sorted(glob.glob(os.path.join(GOLDEN, "*", "*")))
           if path.endswith(("request.json", "response.json", ".sse", ".ndjson"))]
LOOP = asyncio.new_event_loop()
INTERNAL = metrics.ERRORS.labels(kind="internal")
logs.configure("critical")


def headers(pairs: dict[str, str]) -> pb.HeaderMap:
    return pb.HeaderMap(headers=[pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])


def message(fdp: atheris.FuzzedDataProvider, kind: str) -> pb.ProcessingRequest:
    eos = fdp.ConsumeBool()
    if kind == "request_headers":
        pairs = {":method": fdp.PickValueInList(["POST", "GET"]), ":path": fdp.PickValueInList(PATHS),
                 "content-type": fdp.PickValueInList(CONTENT_TYPES), "x-request-id": "fuzz"}
        return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=headers(pairs), end_of_stream=eos))
    if kind == "response_headers":
        pairs = {":status": str(fdp.PickValueInList([200, 400, 500])),
                 "content-type": fdp.PickValueInList(CONTENT_TYPES)}
        if fdp.ConsumeBool():
            pairs["content-encoding"] = "gzip"
        return pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=headers(pairs), end_of_stream=eos))
    if kind in ("request_body", "response_body"):
        body = pb.HttpBody(body=body_bytes(fdp), end_of_stream=eos)
        return pb.ProcessingRequest(**{kind: body})
    return pb.ProcessingRequest(**{kind: pb.HttpTrailers()})


class EnvoyOrder:
    """Which messages Envoy would still send, following the mode overrides and end-of-stream flags."""

    def __init__(self) -> None:
        self.request_body = self.response_headers = self.response_body = True
        self.ended = False

    def allows(self, kind: str) -> bool:
        return not self.ended and getattr(self, kind, True)

    def after(self, request: pb.ProcessingRequest, reply: pb.ProcessingResponse) -> None:
        kind = request.WhichOneof("request")
        msg = getattr(request, kind)
        if reply.WhichOneof("response") == "immediate_response":
            self.ended = True
        if reply.HasField("mode_override"):
            mode = reply.mode_override
            if kind == "request_headers":
                self.request_body = mode.request_body_mode != pb.ProcessingMode.NONE
                self.response_headers = mode.response_header_mode != pb.ProcessingMode.SKIP
            self.response_body = mode.response_body_mode != pb.ProcessingMode.NONE
        if kind == "request_headers" and msg.end_of_stream:
            self.request_body = False
        if kind in ("response_headers", "response_body") and msg.end_of_stream:
            self.response_body = False


def body_bytes(fdp: atheris.FuzzedDataProvider) -> bytes:
    """Raw fuzz bytes, a golden request/response/stream as is, or a piece of one with fuzz bytes spliced in
    (whole goldens get the session past parsing, into the detectors and the stream scanner)."""
    how = fdp.ConsumeIntInRange(0, 2)
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
    if how == 0:
        return raw
    sample = fdp.PickValueInList(SAMPLES)
    if how == 1:
        return sample
    start = fdp.ConsumeIntInRange(0, len(sample))
    end = fdp.ConsumeIntInRange(start, len(sample))
    cut = fdp.ConsumeIntInRange(start, end)
    return sample[start:cut] + raw + sample[cut:end]


async def exchange(fdp: atheris.FuzzedDataProvider) -> None:
    session = Session(fdp.PickValueInList(POLICIES))
    order = EnvoyOrder() if fdp.ConsumeBool() else None
    internal_before = INTERNAL._value.get()
    try:
        for i in range(fdp.ConsumeIntInRange(1, 10)):
            kind = ENVOY_ORDER[i] if order else fdp.PickValueInList(KINDS)
            if order and not order.allows(kind):
                continue
            request = message(fdp, kind)
            reply = session.handle(request)
            if not isinstance(reply, pb.ProcessingResponse):
                reply = await reply
            if not isinstance(reply, pb.ProcessingResponse) or reply.WhichOneof("response") is None:
                raise AssertionError(f"no ProcessingResponse for {kind}")
            if order:
                order.after(request, reply)
    finally:
        work = session.finish()
        if work is not None:
            await work
    if order and INTERNAL._value.get() != internal_before:
        raise AssertionError("an unexpected exception was caught at the session boundary (in Envoy's order)")


def test_one_input(data: bytes) -> None:
    LOOP.run_until_complete(exchange(atheris.FuzzedDataProvider(data)))


if __name__ == "__main__":
    run(test_one_input)

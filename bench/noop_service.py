"""A do-nothing ext_proc service: the floor of the benchmark.

It answers every message at once without looking at it, over the same grpc.aio server options and the same
Envoy filter configuration as `extproc serve`, and takes the same phases our service takes with a policy that
inspects both directions: request headers, the buffered request body, response headers (JSON responses
switched to BUFFERED, as the service does), and every response body message. Whatever it adds over plain
Envoy is the cost of a Python ext_proc seeing those messages at all, before any policy work; the difference
between it and the service with a policy is what our code costs.

    python -m bench.noop_service --listen 127.0.0.1:PORT --metrics-listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import grpc

from extproc import envoy, metrics, pb
from extproc.server import ServeOptions, grpc_options

# The service's own per-message histogram, so the benchmark counts messages the same way for both.
MESSAGES = {kind: metrics.MESSAGE_SECONDS.labels(phase=kind) for kind in
            ("request_headers", "request_body", "response_headers", "response_body", "request_trailers",
             "response_trailers")}

_CONTINUE = {
    "request_headers": envoy.headers_reply("request"),
    "request_body": envoy.body_reply("request"),
    "response_body": envoy.body_reply("response"),
    "request_trailers": envoy.trailers_reply("request"),
    "response_trailers": envoy.trailers_reply("response"),
}
_RESPONSE_HEADERS = envoy.headers_reply("response")
_RESPONSE_HEADERS_BUFFERED = envoy.headers_reply("response", mode=envoy.response_mode(envoy.BUFFERED))


def reply_to(request: pb.ProcessingRequest) -> pb.ProcessingResponse:
    kind = request.WhichOneof("request")
    if kind != "response_headers":
        return _CONTINUE[kind]
    content_type = envoy.header_map(request.response_headers.headers).get("content-type", "")
    return _RESPONSE_HEADERS_BUFFERED if is_json_media(content_type) else _RESPONSE_HEADERS


class NoopProcessor(pb.ExternalProcessorServicer):
    async def Process(self, request_iterator: AsyncIterator[pb.ProcessingRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ProcessingResponse]:
        async for request in request_iterator:
            MESSAGES[request.WhichOneof("request")].observe(0.0)
            yield reply_to(request)


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=grpc_options(ServeOptions()))
    pb.add_ExternalProcessorServicer_to_server(NoopProcessor(), server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--metrics-listen", required=True)
    args = parser.parse_args()
    metrics.serve_metrics(args.metrics_listen)
    asyncio.run(serve(args.listen))


def is_json_media(content_type: str) -> bool:
    """Whether a Content-Type value (parameters allowed) is JSON: such responses are buffered and inspected."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


if __name__ == "__main__":
    main()

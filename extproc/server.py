"""The grpc.aio server: ext_proc servicer, gRPC health, graceful drain on SIGTERM, policy hot reload."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc import digest, logs, metrics, pb
from extproc.detectors._injection import verdicts
from extproc.policy.reload import PolicyHolder, close_checks
from extproc.request_phase import LARGE_BODY_BYTES
from extproc.session import Session
from extproc.shadow import Shadow

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
_log = logs.get("extproc.server")


@dataclass
class ServeOptions:
    listen: str = "127.0.0.1:50051"
    policy: str | None = None
    metrics_listen: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024  # above any body Envoy buffers (its limit is per listener)
    drain_seconds: float = 30.0
    reload_interval: float = 1.0
    reuse_port: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    digest_key_file: str | None = None
    max_streams: int = 1000  # concurrent ext_proc streams (= exchanges in flight) before refusing new ones
    shadow_policy: str | None = None  # a candidate policy evaluated on live traffic, changing nothing


MORE_TIME = pb.ProcessingResponse()
MORE_TIME.override_message_timeout.FromSeconds(30)  # bounded by the filter's max_message_timeout


def _is_large_body(request: pb.ProcessingRequest) -> bool:
    kind = request.WhichOneof("request")
    return kind in ("request_body", "response_body") and len(getattr(request, kind).body) > LARGE_BODY_BYTES


class ExternalProcessor(pb.ExternalProcessorServicer):
    def __init__(self, holder: PolicyHolder, max_streams: int = 0, shadow: PolicyHolder | None = None) -> None:
        self.holder = holder
        self.shadow = shadow
        self.max_streams = max_streams  # 0: no cap
        self.in_flight = 0

    async def Process(self, request_iterator: AsyncIterator[pb.ProcessingRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ProcessingResponse]:
        if self.max_streams and self.in_flight >= self.max_streams:
            # Refuse at once rather than queue: Envoy fails closed (status_on_error) and the client can retry
            # on another replica, while the exchanges already admitted keep their CPU.
            metrics.STREAMS_REFUSED.inc()
            _log.warning("stream_refused", reason="too many exchanges in flight", in_flight=self.in_flight,
                         limit=self.max_streams)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many exchanges in flight")
        session = Session(self.holder.current)
        shadow = Shadow(self.shadow.current) if self.shadow is not None else None
        session.shadow_of = shadow
        digest.bind_exchange_key()
        verdicts.bind_exchange_budget()  # the injection encoder's window budget, one per exchange
        self.in_flight += 1
        metrics.STREAMS_IN_FLIGHT.inc()
        try:
            async for request in request_iterator:
                if _is_large_body(request):
                    # Scanning a big body takes long: ask Envoy for more time, and scan in a thread so the
                    # event loop keeps serving the other exchanges meanwhile.
                    yield MORE_TIME
                    reply = await asyncio.to_thread(session.handle, request)
                    if shadow is not None:
                        await asyncio.to_thread(shadow.observe, request)
                else:
                    reply = session.handle(request)
                    if shadow is not None:
                        shadow.observe(request)
                yield reply if isinstance(reply, pb.ProcessingResponse) else await reply
        finally:
            self.in_flight -= 1
            metrics.STREAMS_IN_FLIGHT.dec()
            _in_background(session.finish())


_BACKGROUND: set[asyncio.Task[Any]] = set()
BACKGROUND_GRACE_SECONDS = 5.0


def _in_background(work: Coroutine[Any, Any, None] | None) -> None:
    """Run end-of-exchange work (settling budgets) without delaying the stream's end; keep a reference so
    the task is not garbage-collected before it ran."""
    if work is None:
        return
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def grpc_options(options: ServeOptions) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", options.max_message_bytes),
        # Tolerate Envoy's HTTP/2 keepalive pings instead of answering them with GOAWAY.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 1 if options.reuse_port else 0),
    ]


def _credentials(options: ServeOptions) -> grpc.ServerCredentials | None:
    if not options.tls_cert:
        return None
    with open(options.tls_cert, "rb") as cert, open(options.tls_key or "", "rb") as key:
        pair = [(key.read(), cert.read())]
    client_ca = Path(options.tls_client_ca).read_bytes() if options.tls_client_ca else None
    return grpc.ssl_server_credentials(pair, root_certificates=client_ca, require_client_auth=client_ca is not None)


async def serve(options: ServeOptions, ready: asyncio.Event | None = None) -> None:
    holder = PolicyHolder(options.policy)
    shadow = PolicyHolder(options.shadow_policy, role="shadow") if options.shadow_policy else None
    digest_key = digest.configure(options.digest_key_file)
    server = grpc.aio.server(options=grpc_options(options))
    pb.add_ExternalProcessorServicer_to_server(ExternalProcessor(holder, options.max_streams, shadow), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    credentials = _credentials(options)
    if credentials is None:
        server.add_insecure_port(options.listen)
    else:
        server.add_secure_port(options.listen, credentials)
    if options.metrics_listen:
        metrics.serve_metrics(options.metrics_listen)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _log.info("server_started", listen=options.listen, metrics=options.metrics_listen,
              policy=holder.current.digest[:12], policy_path=options.policy or "default",
              digest_key=digest_key.source)
    watchers = [asyncio.create_task(holder.watch(options.reload_interval)),
                asyncio.create_task(digest_key.watch(options.reload_interval))]
    if shadow is not None:
        watchers.append(asyncio.create_task(shadow.watch(options.reload_interval)))
        _log.info("shadow_policy_loaded", policy=shadow.current.digest[:12], policy_path=options.shadow_policy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    await _drain(server, health_servicer, options.drain_seconds, holder)
    for watcher in watchers:
        watcher.cancel()


async def _drain(server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, grace: float,
                 holder: PolicyHolder) -> None:
    """Refuse new streams, let in-flight ones finish (up to `grace` seconds)."""
    _log.info("server_draining", grace_seconds=grace)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace)
    if _BACKGROUND:  # budgets still settling for exchanges that just ended
        await asyncio.wait(set(_BACKGROUND), timeout=BACKGROUND_GRACE_SECONDS)
    await close_checks(holder.current)
    _log.info("server_stopped")

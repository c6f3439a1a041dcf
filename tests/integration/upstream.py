"""ScriptedUpstream: a programmable HTTP/1.1 upstream for integration tests.

It serves on 127.0.0.1 with an OS-chosen port from a background thread with its own event loop, so
synchronous pytest code can drive it:

    with ScriptedUpstream() as up:
        up.respond("/v1/chat/completions", headers={"content-type": "text/event-stream"},
                   chunks=[b"data: 1\\n\\n", b"data: 2\\n\\n"], chunk_delay=0.2)
        ...  # send traffic to up.url (through Envoy)
        [req] = up.wait_for_requests(1, timeout=5)

Programmed replies form a queue per path, each used once; with none queued a path answers with its
`respond_always` reply if it has one (e.g. an Ollama `/api/tags` table), else 200 `{"ok": true}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

DEFAULT_BODY = b'{"ok": true}'


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    query: str = ""
    received_at: float = 0.0  # time.monotonic() once the whole body was read

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None
    chunk_delay: float = 0.0


def _lower_headers(request: web.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class ScriptedUpstream:
    """An aiohttp server in a background thread; every public method is safe to call from any thread."""

    def __init__(self, host: str = "127.0.0.1", *, start_timeout: float = 10.0) -> None:
        self.host = host
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._replies: dict[str, deque[ScriptedReply]] = defaultdict(deque)
        self._always: dict[str, ScriptedReply] = {}
        self._chunk_times: dict[str, list[float]] = defaultdict(list)
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- lifecycle ----

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScriptedUpstream is not started")
        return self._port  # kept after stop(), so messages can still name it

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("ScriptedUpstream is already started")
        self._sock = socket.create_server((self.host, 0))
        self._port = int(self._sock.getsockname()[1])
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"scripted-upstream-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            self.stop()
            raise TimeoutError(f"ScriptedUpstream did not start within {self.start_timeout}s")
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise RuntimeError("ScriptedUpstream failed to start") from error
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)
        if self._sock is not None:
            self._sock.close()
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - start() re-raises it; nothing else sees this thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            assert self._sock is not None
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # ---- scripting and inspection ----

    def respond(
        self,
        path: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
        chunks: list[bytes] | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        """Queue the reply for the next request to `path`. With `chunks`, each one goes out as its own
        HTTP/1.1 chunk, `chunk_delay` seconds apart, and its write time lands in `chunk_times[path]`."""
        if chunks is not None and body:
            raise ValueError("give body or chunks, not both")
        if chunks is not None and not all(chunks):
            raise ValueError("empty chunks cannot be sent (a zero-length chunk ends the body)")
        raw = body.encode() if isinstance(body, str) else bytes(body)
        frozen = tuple(bytes(c) for c in chunks) if chunks is not None else None
        reply = ScriptedReply(status, dict(headers or {}), raw, frozen, chunk_delay)
        with self._lock:
            self._replies[path].append(reply)

    def respond_always(self, path: str, *, status: int = 200, headers: dict[str, str] | None = None,
                       body: bytes | str = b"") -> None:
        """Answer every request to `path` that finds no queued reply with this one, until reset()."""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        with self._lock:
            self._always[path] = ScriptedReply(status, dict(headers or {}), raw)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chunk_times(self) -> dict[str, list[float]]:
        """Per path, time.monotonic() right after each chunk was handed to the socket (all replies)."""
        with self._lock:
            return {path: list(times) for path, times in self._chunk_times.items()}

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived; returns them all. Raises TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests within {timeout}s, got {len(self._requests)}")
            return list(self._requests)

    def reset(self) -> None:
        """Forget received requests, chunk times and queued replies."""
        with self._lock:
            self._requests.clear()
            self._replies.clear()
            self._always.clear()
            self._chunk_times.clear()

    # ---- serving ----

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers, query = _lower_headers(request), request.query_string
        record = RecordedRequest(request.method, request.path, headers, body, query, time.monotonic())
        with self._changed:
            self._requests.append(record)
            queue = self._replies.get(request.path)
            reply = queue.popleft() if queue else self._always.get(request.path)
            self._changed.notify_all()
        if reply is None:
            return web.Response(body=DEFAULT_BODY, content_type="application/json")
        if reply.chunks is None:
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        return await self._stream(request, reply)

    async def _stream(self, request: web.Request, reply: ScriptedReply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the client hung up mid-stream
            for index, chunk in enumerate(reply.chunks or ()):
                if index and reply.chunk_delay > 0:
                    await asyncio.sleep(reply.chunk_delay)
                await response.write(chunk)
                self._note_chunk(request.path)
            await response.write_eof()
        return response

    def _note_chunk(self, path: str) -> None:
        with self._lock:
            self._chunk_times[path].append(time.monotonic())

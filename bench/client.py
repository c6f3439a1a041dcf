"""A small asyncio HTTP/1.1 keep-alive client: closed-loop load with latencies, and streamed reads that time
the first body byte, the first content text and the end of each response."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.payloads import first_text_offset


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    t_sent: float
    t_headers: float
    t_first_byte: float | None  # first body byte
    t_end: float
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, decoded body length so far)

    def time_to_first_text(self) -> float | None:
        """Seconds from sending until the first SSE record with content text was complete at the client."""
        offset = first_text_offset(self.body)
        if offset is None:
            return None
        for t, length in self.arrivals:
            if length >= offset:
                return t - self.t_sent
        return None


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes, track: bool = False) -> Reply:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        reader = self.reader
        t_sent = time.perf_counter()
        self.writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        t_headers = time.perf_counter()
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
        arrivals: list[tuple[float, int]] = []
        t_first = None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            size_so_far = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if t_first is None:
                    t_first = time.perf_counter()
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers expected
                    break
                data = await reader.readexactly(size + 2)
                parts.append(data[:-2])
                if track:
                    size_so_far += size
                    arrivals.append((time.perf_counter(), size_so_far))
            body = b"".join(parts)
        else:
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            t_first = time.perf_counter()
        t_end = time.perf_counter()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, body, t_sent, t_headers, t_first, t_end, arrivals)


def raw_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json",
             f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(q / 100 * len(self.latencies)))]


async def load(host: str, port: int, raw: bytes, conns: int, duration: float, warmup: float = 0.0) -> LoadResult:
    """Closed loop: `conns` connections each sending the next request when the previous one is answered."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration

    async def worker() -> None:
        nonlocal errors
        conn = Conn(host, port)
        try:
            while time.perf_counter() < stop:
                try:
                    reply = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    conn.close()
                    continue
                if reply.t_sent >= measure_from and reply.t_end <= stop:
                    latencies.append(reply.t_end - reply.t_sent)
                    statuses[reply.status] = statuses.get(reply.status, 0) + 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    latencies.sort()
    bad = sum(n for status, n in statuses.items() if status != 200)
    return LoadResult(len(latencies), errors + bad, duration, latencies, statuses)


async def run_streams(host: str, port: int, make_raw: Callable[[int], bytes], conns: int, total: int,
                      check: Callable[[int, Reply], None] | None = None, until: float | None = None) -> list[Reply]:
    """`total` streamed requests over `conns` connections; request i is make_raw(i); check(i, reply) sees each.
    With `until` (a time.perf_counter() value) no new request starts after it."""
    replies: list[Reply] = []
    queue = iter(range(total))

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            for i in queue:
                if until is not None and time.perf_counter() > until:
                    break
                reply = await conn.request(make_raw(i), track=True)
                if check is not None:
                    check(i, reply)
                replies.append(reply)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return replies

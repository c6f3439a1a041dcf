"""A minimal, fast scripted upstream: raw asyncio HTTP/1.1 (keep-alive) on one port, prebuilt replies.

    python -m bench.upstream --listen 127.0.0.1:PORT

What to answer is chosen by request headers (Envoy forwards them unchanged):
  x-bench-kind: json   x-bench-size: BYTES         an OpenAI chat.completion of that size (content-length)
  x-bench-kind: sse    x-bench-events: N  x-bench-gap-us: US
                                                   an OpenAI SSE stream of N records, one every US µs
                                                   (0: back to back, one write per record), chunked
  x-bench-kind: leak   x-bench-seed: S             the leak-check case S (bench.payloads.leak_case)
No header: 200 `{"ok":true}`. The request body is read (content-length or chunked) and discarded.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

from bench import payloads

_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
             b"transfer-encoding: chunked\r\n\r\n")
_cache: dict[tuple, object] = {}


def _json_reply(body: bytes) -> bytes:
    return _JSON_HEAD % len(body) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _plan(headers: dict[bytes, bytes]) -> tuple[str, object]:
    """('whole', bytes) or ('stream', (records, gap_seconds, split_writes))."""
    kind = headers.get(b"x-bench-kind", b"")
    key = (kind, headers.get(b"x-bench-size"), headers.get(b"x-bench-events"), headers.get(b"x-bench-gap-us"),
           headers.get(b"x-bench-seed"))
    plan = _cache.get(key)
    if plan is None:
        plan = _cache[key] = _build(kind, headers)
    return plan  # type: ignore[return-value]


def _build(kind: bytes, headers: dict[bytes, bytes]) -> tuple[str, object]:
    if kind == b"json":
        return "whole", _json_reply(payloads.chat_response(int(headers.get(b"x-bench-size", b"1024"))))
    if kind == b"sse":
        records = payloads.bench_stream(int(headers.get(b"x-bench-events", b"200")))
        return "stream", ([_chunk(r) for r in records], int(headers.get(b"x-bench-gap-us", b"0")) / 1e6, False)
    if kind == b"leak":
        case = payloads.leak_case(int(headers[b"x-bench-seed"]))
        if case.mode == "json":
            return "whole", _json_reply(case.response_body())
        gap = 0.0 if case.mode == "sse-b2b" else 0.001
        return "stream", ([_chunk(r) for r in case.records()], gap, case.mode == "sse-split")
    return "whole", _json_reply(b'{"ok":true}')


class Upstream(asyncio.Protocol):
    __slots__ = ("_send", "buf", "busy", "loop", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = bytearray()
        self.busy = False
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.busy = True  # stop pending stream writes and parsing

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        while not self.busy:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                consumed = _chunked_length(buf, start)
                if consumed is None:
                    return
                del buf[:consumed]
            else:
                length = int(headers.get(b"content-length", b"0"))
                if len(buf) < start + length:
                    return
                del buf[:start + length]
            how, what = _plan(headers)
            if how == "whole":
                self.transport.write(what)  # type: ignore[arg-type]
            else:
                self.busy = True
                self._stream(*what)  # type: ignore[misc]
                return

    def _stream(self, chunks: list[bytes], gap: float, split: bool) -> None:
        write = self.transport.write
        if gap <= 0:
            write(_SSE_HEAD)
            for chunk in chunks:
                write(chunk)
            write(b"0\r\n\r\n")
            self._done()
            return
        t0 = self.loop.time()
        write(_SSE_HEAD + chunks[0])

        def send(i: int) -> None:
            if self.transport.is_closing():
                return
            chunk = chunks[i]
            if split and i % 3 == 0:  # one record in two TCP writes: framers must reassemble
                half = len(chunk) // 2
                write(chunk[:half])
                self.loop.call_later(0.0002, self._write_rest, chunk[half:], i, chunks, t0, gap, split)
                return
            write(chunk)
            self._next(i, chunks, t0, gap, split, send)

        self._send = send
        if len(chunks) > 1:
            self.loop.call_at(t0 + gap, send, 1)
        else:
            self._finish()

    def _write_rest(self, rest: bytes, i: int, chunks: list[bytes], t0: float, gap: float, split: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(rest)
        self._next(i, chunks, t0, gap, split, self._send)

    def _next(self, i: int, chunks: list[bytes], t0: float, gap: float, split: bool, send) -> None:  # type: ignore[no-untyped-def]
        if i + 1 < len(chunks):
            self.loop.call_at(t0 + (i + 1) * gap, send, i + 1)
        else:
            self._finish()

    def _finish(self) -> None:
        self.transport.write(b"0\r\n\r\n")
        self._done()

    def _done(self) -> None:
        self.busy = False
        if self.buf:
            self.loop.call_soon(self._process)


def _chunked_length(buf: bytearray, pos: int) -> int | None:
    """Bytes up to the end of a chunked body starting at `pos`, or None if incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            return None if end < 0 else end + 4
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


def _listen_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, sock=sock)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--listen", default="127.0.0.1:18080")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    sock = _listen_socket(host, int(port))
    try:
        import uvloop  # optional: used when installed

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_serve(sock))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Faults through a real Envoy 1.40: the service killed mid-stream, the service stalled past message_timeout
(before and after the response started), the upstream resetting mid-stream. What the client sees, whether any
byte the service did not approve reaches it, whether the audit record is written. Measured outcomes are
tabulated in docs/faults.md.

Each test gets its own stack (the faults break it); processes are signalled by PID only."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
from conftest import make_stack
from policies import policy_text, regex_rule
from sse import openai_stream, openai_text

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
SECRET = "sk-" + "Zq8Wm3Xv7Lp2Nr5Tb9Yc4Hd"
POLICY = policy_text(regex_rule("redact-out", "redact", "response"))
CLIENT_TIMEOUT = 15.0


def chat(text: str = "hello", stream: bool = False) -> dict:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}


@dataclass
class Received:
    status: int | None = None
    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    error: str | None = None  # how the body ended, if not cleanly
    ended_at: float = 0.0

    @property
    def body(self) -> bytes:
        return b"".join(p for _, p in self.pieces)


def stream_request(stack, payload: dict, on_first_bytes=None, headers: dict | None = None) -> Received:
    """POST and read the body as it arrives, recording how it ended (clean, truncated, reset, timeout)."""
    got = Received()
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("POST", CHAT, body=json.dumps(payload).encode(),
                     headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        got.status = response.status
        while True:
            data = response.read1(65536)
            if not data:
                break
            got.pieces.append((time.monotonic(), data))
            if on_first_bytes is not None and len(got.pieces) == 1:
                on_first_bytes()
    except (TimeoutError, http.client.IncompleteRead, ConnectionError, http.client.RemoteDisconnected) as exc:
        got.error = type(exc).__name__
    finally:
        got.ended_at = time.monotonic()
        conn.close()
    return got


def delta_indexes(body: bytes) -> list[int]:
    """The `partN` markers of the text the client reassembled."""
    return [int(word[4:]) for word in openai_text(body).split() if word.startswith("part")]


def sse_records(pieces: list[str]) -> list[bytes]:
    return [r + b"\n\n" for r in openai_stream(pieces).split(b"\n\n") if r]


def report(case: str, **measured) -> None:
    """One line per fault with what was measured (run with -s to see them; docs/faults.md quotes them)."""
    print(f"\nFAULT {case}: " + ", ".join(f"{k}={v}" for k, v in measured.items()))


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# ---- the service is killed mid-stream -------------------------------------------------------------------
def test_service_sigkill_mid_stream_cuts_the_stream_and_new_requests_get_503(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY)
    pieces = [f"part{i} " + "lorem " * 10 for i in range(16)]  # longer than the 42-character hold: text flows
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=sse_records(pieces),
                     chunk_delay=0.25)
    service = stack.procs["service"]
    killed = {}

    def kill():
        killed["at"] = time.monotonic()
        os.kill(service.pid, signal.SIGKILL)

    got = stream_request(stack, chat("go", stream=True), on_first_bytes=lambda: threading.Timer(0.6, kill).start())
    assert service.wait(10) == -signal.SIGKILL
    assert got.status == 200  # the headers had gone out before the kill
    assert got.ended_at - killed["at"] < 5, "the client must not hang"
    written_before_kill = [t for t in upstream.chunk_times[CHAT] if t < killed["at"]]
    seen = delta_indexes(got.body)
    assert seen == list(range(len(seen))), "what arrived is an in-order prefix"
    # No upstream byte the dead service had not approved reaches the client: only records written before the
    # kill (minus the held tail) arrive, and nothing after the kill but Envoy closing the stream.
    assert len(seen) < len(written_before_kill)
    assert not [t for t, _ in got.pieces if t > killed["at"] + 0.2]
    assert got.error is not None or b"data: [DONE]" not in got.body, "the stream must end cut, not complete"
    # The service is gone: Envoy fails closed with status_on_error for new exchanges.
    reply = stack.post(CHAT, chat("hello"))
    assert reply.status == 503
    assert len(upstream.requests) == 1
    report("sigkill-mid-stream", status=got.status, ended=got.error or "clean-eof",
           cut_after_s=round(got.ended_at - killed["at"], 2), upstream_records_before_kill=len(written_before_kill),
           records_seen=len(seen), bytes_after_kill=sum(len(p) for t, p in got.pieces if t > killed["at"]),
           audit_records=len(stack.audit_records()), next_request=reply.status, next_body=reply.body[:60])
    # ... and recovers when a service listens again on the same port.
    stack.start_service()
    assert wait_until(lambda: stack.post(CHAT, chat("hello")).status == 200)


# ---- the service stalls (SIGSTOP) past message_timeout ----------------------------------------------------
def test_service_stalled_before_response_headers_gets_504_then_recovers(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY, message_timeout="2s")
    service = stack.procs["service"]
    os.kill(service.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        reply = stack.post(CHAT, chat("hello"), {"x-request-id": "stall-0"})
        waited = time.monotonic() - started
    finally:
        os.kill(service.pid, signal.SIGCONT)
    assert reply.status == 504
    assert 1.8 < waited < 6, waited
    assert upstream.requests == []  # the request headers were never answered: nothing went upstream
    # After SIGCONT the service answers the abandoned stream (Envoy drops the late reply), writes its record and
    # serves new exchanges normally.
    upstream.respond(CHAT, headers={"content-type": "application/json"},
                     body=json.dumps({"choices": [{"index": 0, "message": {"content": "ok"}}]}))
    assert stack.post(CHAT, chat("again")).status == 200
    # Measured: when the service resumes, gRPC delivers the abandoned stream already cancelled, before any of
    # its messages: the session sees nothing (no request id, path or status) and its record says so.
    # (Should gRPC hand over the request headers first, the record carries the request id instead.)
    records = stack.wait_for_audit(2)
    mine = [r for r in records if r.get("request_id") == "stall-0" or (r.get("incomplete") and "request_id" not in r)]
    assert len(mine) == 1 and "status" not in mine[0]
    report("sigstop-before-headers", status=reply.status, waited_s=round(waited, 2), body=reply.body[:80],
           upstream_requests=0, audit=mine[0])


def test_service_stalled_mid_stream_cuts_the_stream_without_releasing_held_bytes(request, tmp_path_factory,
                                                                                  upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY, message_timeout="2s")
    # The secret starts in a record the service will never answer: none of it may reach the client.
    pieces = ["part0 ", "part1 ", "part2 ", SECRET[:10], SECRET[10:], " part5 ", "part6 "]
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=sse_records(pieces),
                     chunk_delay=0.3)
    service = stack.procs["service"]
    stopped = {}

    def stop():
        stopped["at"] = time.monotonic()
        os.kill(service.pid, signal.SIGSTOP)

    try:
        got = stream_request(stack, chat("go", stream=True), headers={"x-request-id": "stall-1"},
                             on_first_bytes=lambda: threading.Timer(0.35, stop).start())
    finally:
        if service.poll() is None:
            os.kill(service.pid, signal.SIGCONT)
    assert got.status == 200
    assert SECRET[:6] not in got.body.decode("utf-8", "replace")
    assert b"data: [DONE]" not in got.body, "the stream must be cut, not completed"
    # Measured: Envoy re-arms message_timeout each time it sends the stalled service another chunk, so the
    # stream is cut once the upstream has finished (or paused) for message_timeout, not 2 s after the stall.
    upstream_done = upstream.chunk_times[CHAT][-1]
    assert got.ended_at - upstream_done < 2 + 3, "cut within message_timeout of the upstream's end, never a hang"
    assert not [t for t, _ in got.pieces if t > stopped["at"] + 0.2]
    # The service writes its record for the cut stream once it runs again, and says the response was cut.
    record = stack.audit_for("stall-1")
    assert record["response_mode"] == "streamed" and record["incomplete"] is True
    report("sigstop-mid-stream", status=got.status, ended=got.error or "clean-eof",
           cut_after_s=round(got.ended_at - stopped["at"], 2),
           upstream_done_after_s=round(upstream_done - stopped["at"], 2), text=openai_text(got.body),
           bytes_after_stop=sum(len(p) for t, p in got.pieces if t > stopped["at"]),
           audit={k: record.get(k) for k in ("decision", "status", "incomplete")})


# ---- the upstream resets mid-stream ------------------------------------------------------------------------
class ResettingUpstream:
    """Answers every request with 200 SSE headers and two chunks, then closes the socket mid-body (no final
    zero-length chunk): an upstream reset as Envoy sees it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for chunk in self.chunks:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(0.2)
        self.served += 1
        conn.shutdown(socket.SHUT_RDWR)  # no "0\r\n\r\n": the body is cut

    def close(self) -> None:
        self.sock.close()


def test_upstream_reset_mid_stream_still_writes_the_audit_record(request, tmp_path_factory):
    records = sse_records(["part0 " + "lorem " * 10, "part1 " + "lorem " * 10, "key " + SECRET[:12],
                           SECRET[12:] + " part4"])
    # Chunk 1: the role record and two text records; chunk 2: the record starting the secret. The rest never
    # comes: the upstream closes the connection mid-body.
    raw = ResettingUpstream([records[0] + records[1] + records[2], records[3]])
    request.addfinalizer(raw.close)
    stack = make_stack(request, tmp_path_factory, raw, POLICY)
    got = stream_request(stack, chat("go", stream=True), headers={"x-request-id": "reset-1"})
    assert raw.served == 1
    assert got.status == 200
    assert got.error is not None or b"data: [DONE]" not in got.body
    assert SECRET[:6] not in got.body.decode("utf-8", "replace"), "the held start of a secret is never released"
    # The two clean records are released as they come; the one holding the start of the secret dies with the stream.
    assert delta_indexes(got.body) == [0, 1], "released text arrives; the held tail dies with the stream"
    record = stack.audit_for("reset-1")
    assert record["status"] == 200 and record["response_mode"] == "streamed"
    assert record["incomplete"] is True
    assert SECRET not in stack.log("service")
    report("upstream-reset", status=got.status, ended=got.error or "clean-eof", text=openai_text(got.body)[:20],
           audit={k: record.get(k) for k in ("decision", "status", "response_mode", "incomplete")})

"""The scripted upstream used by the integration tests: recording, queueing, chunk timing."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from upstream import ScriptedUpstream


def fetch(method: str, url: str, **kwargs) -> tuple[int, dict[str, str], bytes]:
    async def go() -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    return asyncio.run(go())


def read_chunks(url: str) -> tuple[list[bytes], list[float]]:
    """GET url; return the HTTP chunks as received and the monotonic time each one completed."""

    async def go() -> tuple[list[bytes], list[float]]:
        chunks, times, pending = [], [], b""
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            async for data, end_of_chunk in resp.content.iter_chunks():
                pending += data
                if end_of_chunk and pending:
                    chunks.append(pending)
                    times.append(time.monotonic())
                    pending = b""
        return chunks, times

    return asyncio.run(go())


@pytest.fixture
def upstream():
    with ScriptedUpstream() as up:
        yield up


def test_start_gives_a_port_and_url_and_stop_closes_it():
    up = ScriptedUpstream().start()
    try:
        assert up.port > 0
        assert up.url == f"http://127.0.0.1:{up.port}"
        assert fetch("GET", up.url + "/ping")[0] == 200
    finally:
        up.stop()
    up.stop()  # idempotent
    with pytest.raises(aiohttp.ClientConnectionError):
        fetch("GET", up.url + "/ping")


def test_start_twice_is_an_error(upstream):
    with pytest.raises(RuntimeError):
        upstream.start()


def test_port_before_start_is_an_error():
    with pytest.raises(RuntimeError):
        _ = ScriptedUpstream().port


def test_default_reply_is_ok_json(upstream):
    status, headers, body = fetch("POST", upstream.url + "/anything", data=b"x")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == b'{"ok": true}'


def test_records_method_path_lowercase_headers_and_body(upstream):
    fetch("POST", upstream.url + "/v1/chat/completions?x=1", data=b'{"a": 1}', headers={"X-Trace-Id": "abc"})
    fetch("GET", upstream.url + "/v1/models")
    first, second = upstream.wait_for_requests(2, timeout=5)
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "x=1")
    assert first.headers["x-trace-id"] == "abc"
    assert all(name == name.lower() for name in first.headers)
    assert first.body == b'{"a": 1}' and first.json() == {"a": 1}
    assert (second.method, second.path, second.body) == ("GET", "/v1/models", b"")


def test_requests_is_a_snapshot(upstream):
    fetch("GET", upstream.url + "/a")
    snapshot = upstream.requests
    fetch("GET", upstream.url + "/b")
    assert [r.path for r in snapshot] == ["/a"]
    assert [r.path for r in upstream.requests] == ["/a", "/b"]


def test_replies_queue_per_path_then_fall_back_to_default(upstream):
    upstream.respond("/x", status=503, headers={"x-which": "one"}, body=b"first")
    upstream.respond("/x", status=201, body="second")
    assert fetch("GET", upstream.url + "/y")[2] == b'{"ok": true}'
    status, headers, body = fetch("GET", upstream.url + "/x")
    assert (status, headers["x-which"], body) == (503, "one", b"first")
    assert fetch("GET", upstream.url + "/x")[::2] == (201, b"second")
    assert fetch("GET", upstream.url + "/x")[::2] == (200, b'{"ok": true}')


def test_chunks_arrive_as_separate_http_chunks_before_the_last_is_written(upstream):
    chunks = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
    sse = {"content-type": "text/event-stream"}
    upstream.respond("/stream", headers=sse, chunks=chunks, chunk_delay=0.15)
    received, received_at = read_chunks(upstream.url + "/stream")
    assert received == chunks
    written_at = upstream.chunk_times["/stream"]
    assert len(written_at) == 3
    assert received_at[0] < written_at[-1]  # the client had chunk 1 while the upstream was still writing
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(written_at))


def test_chunked_reply_keeps_status_and_headers(upstream):
    upstream.respond("/s", status=202, headers={"content-type": "application/x-ndjson"}, chunks=[b"{}\n"])
    status, headers, body = fetch("GET", upstream.url + "/s")
    assert (status, headers["Content-Type"], headers["Transfer-Encoding"], body) == (
        202,
        "application/x-ndjson",
        "chunked",
        b"{}\n",
    )


def test_respond_rejects_body_with_chunks_and_empty_chunks(upstream):
    with pytest.raises(ValueError):
        upstream.respond("/p", body=b"x", chunks=[b"y"])
    with pytest.raises(ValueError):
        upstream.respond("/p", chunks=[b"y", b""])


def test_wait_for_requests_times_out(upstream):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        upstream.wait_for_requests(1, timeout=0.1)
    assert time.monotonic() - started < 2


def test_wait_for_requests_wakes_when_a_request_arrives(upstream):
    sender = threading.Thread(target=fetch, args=("GET", upstream.url + "/late"))
    sender.start()
    try:
        assert [r.path for r in upstream.wait_for_requests(1, timeout=10)] == ["/late"]
    finally:
        sender.join()


def test_concurrent_requests_are_all_recorded(upstream):
    async def burst() -> None:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> None:
                async with session.post(f"{upstream.url}/c/{i}", data=str(i)) as resp:
                    await resp.read()

            await asyncio.gather(*(one(i) for i in range(25)))

    asyncio.run(burst())
    recorded = upstream.wait_for_requests(25, timeout=5)
    assert sorted(int(r.body) for r in recorded) == list(range(25))


def test_reset_forgets_requests_replies_and_times(upstream):
    upstream.respond("/r", chunks=[b"a"])
    upstream.respond("/r", status=500)
    fetch("GET", upstream.url + "/r")
    upstream.reset()
    assert upstream.requests == [] and upstream.chunk_times == {}
    assert fetch("GET", upstream.url + "/r")[0] == 200


def test_respond_always_answers_whenever_nothing_is_queued_until_reset(upstream):
    upstream.respond_always("/api/tags", headers={"content-type": "application/json"}, body=b'{"models": []}')
    upstream.respond("/api/tags", status=500, body=b"queued")
    assert fetch("GET", upstream.url + "/api/tags")[::2] == (500, b"queued")
    assert fetch("GET", upstream.url + "/api/tags")[::2] == (200, b'{"models": []}')
    assert fetch("GET", upstream.url + "/api/tags")[::2] == (200, b'{"models": []}')
    upstream.reset()
    assert fetch("GET", upstream.url + "/api/tags")[::2] == (200, b'{"ok": true}')

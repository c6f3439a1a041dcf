"""Back-pressure through a real Envoy: with `--max-streams 2`, two slow streamed exchanges in flight make
the service refuse a third stream at once (RESOURCE_EXHAUSTED); Envoy fails closed with a 503 before the
model server is called, the refusal is counted, and capacity comes back when the slow exchanges end."""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest import make_stack
from policies import policy_text, regex_rule
from sse import openai_stream, openai_text

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
POLICY = policy_text(regex_rule("redact-out", "redact", "response"))


def chat(stream: bool) -> dict:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def refused_count(stack) -> float:
    found = re.search(r"^extproc_streams_refused_total (\S+)$", stack.metrics(), re.MULTILINE)
    assert found, "extproc_streams_refused_total missing from /metrics"
    return float(found.group(1))


def slow_stream(pieces: list[str]) -> list[bytes]:
    return [block + b"\n\n" for block in openai_stream(pieces).split(b"\n\n") if block]


def test_overload_is_refused_fast_and_recovers(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY, service_args=("--max-streams", "2"))
    release = threading.Event()
    slow = slow_stream([f"part{i} " for i in range(12)])
    results = []

    def hold_a_stream() -> None:
        reply, _ = stack.stream(CHAT, chat(stream=True), on_first_bytes=release.wait)
        results.append(reply)

    for _ in range(2):
        upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=slow, chunk_delay=0.15)
    holders = [threading.Thread(target=hold_a_stream) for _ in range(2)]
    for thread in holders:
        thread.start()
    upstream.wait_for_requests(2, timeout=10)  # both exchanges hold an ext_proc stream now

    started = time.monotonic()
    refused = stack.post(CHAT, chat(stream=False))
    refused_in = time.monotonic() - started
    print(f"FAULT overload: third stream refused with {refused.status} in {refused_in:.3f} s")
    release.set()
    for thread in holders:
        thread.join(timeout=15)

    assert refused.status == 503 and refused_in < 1.0, (refused.status, refused_in)
    assert len(upstream.requests) == 2  # the refused request never reached the model server
    assert refused_count(stack) == 1
    assert '"stream_refused"' in stack.log("service")  # a refusal is logged with its reason
    assert [r.status for r in results] == [200, 200]
    assert all(openai_text(r.body).split() == [f"part{i}" for i in range(12)] for r in results)
    assert stack.post(CHAT, chat(stream=False)).status == 200  # the slots were given back
    assert refused_count(stack) == 1

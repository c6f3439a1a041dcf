"""Service lifecycle through real Envoy: SIGTERM drains in-flight streams; several workers share the load."""

import signal
import threading

import pytest
from conftest import make_stack
from policies import policy_text, regex_rule
from sse import openai_stream, openai_text

pytestmark = pytest.mark.integration
CHAT = "/v1/chat/completions"
POLICY = policy_text(regex_rule("redact-out", "redact", "response"))


def chat(text, stream=False):
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}


def test_sigterm_lets_in_flight_streams_finish_then_envoy_fails_closed(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY)
    pieces = [f"part{i} " for i in range(12)]
    records = [r + b"\n\n" for r in openai_stream(pieces).split(b"\n\n") if r]
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=records, chunk_delay=0.15)
    result = {}
    first_bytes = threading.Event()

    def client():
        reply, _got = stack.stream(CHAT, chat("go", stream=True), on_first_bytes=first_bytes.set)
        result["reply"] = reply

    thread = threading.Thread(target=client)
    thread.start()
    assert first_bytes.wait(10)
    stack.procs["service"].send_signal(signal.SIGTERM)
    thread.join(30)
    assert openai_text(result["reply"].body) == "".join(pieces), "the in-flight stream must complete"
    assert stack.procs["service"].wait(20) == 0
    after = stack.post(CHAT, chat("hello"))
    assert after.status == 503  # the service is gone: Envoy fails closed (failure_mode_allow: false)
    assert len(upstream.requests) == 1


def test_two_workers_share_streams_behind_round_robin(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, POLICY, workers=2)
    for _ in range(20):
        upstream.respond(CHAT, headers={"content-type": "application/json"},
                         body=b'{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}')
        assert stack.post(CHAT, chat("hello")).status == 200
    counts = [_requests_handled(stack.metrics(worker)) for worker in (0, 1)]
    assert sum(counts) == 20 and min(counts) >= 5, counts


def _requests_handled(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("extproc_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total

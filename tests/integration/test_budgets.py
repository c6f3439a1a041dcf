"""Token budgets through real Envoy: two service processes (two stacks) share one Redis budget, a streamed
Ollama response is cut when it outgrows the budget, and a stopped Redis gives each rule its on_error."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import make_stack
from redis_server import RedisServer

from extproc.digest import keyed_digest

pytestmark = pytest.mark.integration

HMAC_KEY = "test-key"  # what Stack gives every service process: replicas must share it
RULE = """  - id: {id}
    check: budgets
    on_error: {on_error}
    match: {{headers: {{x-budget-mode: [{mode}]}}}}
    params:
      store: redis
      redis_url: {url}
      redis_timeout: 0.5
      default_max_output: 20
      windows: [{{tokens: 1000, window: 1d}}]
"""


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stacks(request, tmp_path_factory, upstream, redis_server):
    text = "version: 1\nrules:\n" + RULE.format(id="shared", on_error="fail_closed", mode="closed",
                                                 url=redis_server.url) \
        + RULE.format(id="shared-open", on_error="fail_open", mode="open", url=redis_server.url)
    return (make_stack(request, tmp_path_factory, upstream, text),
            make_stack(request, tmp_path_factory, upstream, text))


def wait_for_value(client, key: str, expected: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(key) == expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"{key} is {client.get(key)!r}, expected {expected!r}")


def day_key(rule: str, token: str) -> str:
    digest = keyed_digest_with(token)
    return f"extproc:budget:{{{rule}:{digest}}}:86400:{int(time.time() // 86400)}"


def keyed_digest_with(token: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTPROC_HMAC_KEY", HMAC_KEY)
        patch.delenv("EXTPROC_HMAC_KEY_FILE", raising=False)
        return keyed_digest(token)


def check_errors(stack) -> float:
    for line in stack.metrics().splitlines():
        if line.startswith('extproc_errors_total{kind="check"}'):
            return float(line.split()[-1])
    return 0.0


def chat(max_tokens: int | None = None, stream: bool = False) -> dict:
    doc = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return doc if max_tokens is None else {**doc, "max_tokens": max_tokens}


def test_a_budget_used_through_one_replica_is_refused_by_the_other(stacks, upstream, redis_server):
    first, second = stacks
    token = "sk-shared-" + "a" * 20
    headers = {"authorization": f"Bearer {token}", "x-budget-mode": "closed"}
    upstream.respond("/v1/chat/completions", headers={"content-type": "application/json"}, body=json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
         "usage": {"prompt_tokens": 10, "completion_tokens": 590}}))
    assert first.post("/v1/chat/completions", chat(600), headers).status == 200
    client = redis_server.client()
    wait_for_value(client, day_key("shared", token), "600")  # 601 reserved, then settled on the usage
    assert all(token not in key for key in client.keys("*"))

    refused = second.post("/v1/chat/completions", chat(600), {**headers, "x-request-id": "budget-refused"})
    assert refused.status == 429
    assert 0 < int(refused.headers["retry-after"]) <= 86400
    long_wait = int(refused.headers["retry-after"]) > 60  # a day window: almost always; SDKs must not sleep it
    assert refused.headers.get("x-should-retry") == ("false" if long_wait else None)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert second.audit_for("budget-refused")["code"] == "budget_exceeded"
    assert len(upstream.requests) == 1  # the refused request never reached the model
    other = {"authorization": "Bearer sk-other-" + "b" * 20, "x-budget-mode": "closed"}
    assert second.post("/v1/chat/completions", chat(600), other).status == 200


def test_a_stream_that_outgrows_the_budget_ends_with_the_shapes_error_event(stacks, upstream, redis_server):
    first, _ = stacks
    token = "sk-stream-" + "c" * 20
    # Reserved: 1 (prompt) + 20 (no num_predict: default_max_output); room 979. Each line is 25 tokens.
    lines = [{"model": "m", "message": {"role": "assistant", "content": f"E{n:02d}" + "z" * 97}, "done": False}
             for n in range(1, 46)]
    lines.append({"model": "m", "message": {"role": "assistant", "content": ""}, "done": True})
    upstream.respond("/api/chat", headers={"content-type": "application/x-ndjson"},
                     chunks=[(json.dumps(line) + "\n").encode() for line in lines], chunk_delay=0.005)
    reply, _ = first.stream("/api/chat", chat(), {"authorization": f"Bearer {token}", "x-budget-mode": "closed",
                                                  "x-request-id": "budget-cut"})
    body = reply.body.decode()
    assert reply.status == 200
    # Lines go out as they come, up to the cut (a chunk Envoy merged with the cutting line is dropped whole).
    seen = re.findall(r"E(\d\d)", body)
    assert 1 <= len(seen) <= 39 and seen == [f"{n:02d}" for n in range(1, len(seen) + 1)], seen
    assert '"done": true' not in body
    assert json.loads(body.strip().splitlines()[-1]) == {"error": "token budget used up while the response streamed"}
    record = first.audit_for("budget-cut")
    assert record["ended_stream_with_error"] is True and record["code"] == "budget_exceeded"
    wait_for_value(redis_server.client(), day_key("shared", token), str(1 + 4000 // 4))


def test_a_stopped_redis_fails_open_or_closed_as_each_rule_says(stacks, upstream, redis_server):
    first, _ = stacks
    headers = {"authorization": "Bearer sk-down-" + "d" * 20}
    redis_server.stop()
    try:
        assert first.post("/v1/chat/completions", chat(50), {**headers, "x-budget-mode": "open"}).status == 200
        assert check_errors(first) >= 1
        closed = first.post("/v1/chat/completions", chat(50), {**headers, "x-budget-mode": "closed"})
        assert closed.status == 503 and closed.json()["error"]["code"] == "policy_error"
    finally:
        redis_server.start()
    assert first.post("/v1/chat/completions", chat(50), {**headers, "x-budget-mode": "closed"}).status == 200

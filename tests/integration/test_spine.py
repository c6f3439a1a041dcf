"""The spine through a real Envoy 1.40: deny before the upstream, redact requests, stream-redact responses
while still streaming, monitor mode, malformed JSON, hot reload, and no secret in logs or metrics."""

import json
import time

import pytest
from conftest import make_stack
from sse import openai_stream, openai_text

pytestmark = pytest.mark.integration

AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
OPENAI_KEY = "sk-proj-" + "T3stK3yN0tR3al" * 3 + "abcd"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PLANTED = [AWS_KEY, OPENAI_KEY, GITHUB_TOKEN]
CHAT = "/v1/chat/completions"

POLICY = """version: 1
settings: {max_request_bytes: 65536}
rules:
  - id: deny-secrets-in-prompts
    detector: secrets
    direction: request
    action: deny
    match: {headers: {x-test: [deny]}}
  - id: redact-secrets-in-prompts
    detector: secrets
    direction: request
    action: redact
    match: {headers: {x-test: [redact]}}
  - id: watch-secrets
    detector: secrets
    action: deny
    mode: monitor
    match: {headers: {x-test: [monitor]}}
  - id: redact-secrets-in-output
    detector: secrets
    direction: response
    action: redact
    match: {headers: {x-test: [deny, redact, stream]}}
  - id: redact-email-in-output
    detector: email
    direction: response
    action: redact
    match: {headers: {x-test: [stream]}}
"""


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def chat(text, stream=False):
    return {"model": "llama3", "stream": stream, "messages": [{"role": "user", "content": text}]}


def test_secret_in_prompt_is_denied_before_the_upstream(stack, upstream):
    reply = stack.post(CHAT, chat(f"deploy with {AWS_KEY} please"), {"x-test": "deny"})
    assert reply.status == 403
    error = reply.json()["error"]
    assert error["code"] == "policy_violation" and "deny-secrets-in-prompts" in error["message"]
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-llm-policy"].startswith("deny")
    assert upstream.requests == []


def test_redact_rule_rewrites_the_request_the_upstream_receives(stack, upstream):
    upstream.respond(CHAT, headers={"content-type": "application/json"},
                     body=json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}))
    reply = stack.post(CHAT, chat(f"token {GITHUB_TOKEN} here"), {"x-test": "redact", "accept-encoding": "gzip"})
    assert reply.status == 200
    [received] = upstream.wait_for_requests(1)
    content = received.json()["messages"][0]["content"]
    assert GITHUB_TOKEN not in received.body.decode() and content.startswith("token [") and content.endswith("] here")
    assert int(received.headers["content-length"]) == len(received.body)
    assert received.headers["accept-encoding"] == "identity"
    assert reply.headers["x-llm-policy"].startswith("redact")


def test_streamed_split_secret_is_redacted_and_streaming_still_streams(stack, upstream):
    stream = openai_stream(["Sure. Your key: ", OPENAI_KEY[:14], OPENAI_KEY[14:30], OPENAI_KEY[30:],
                            " and mail ops@example.com", " — done."])
    records = [r + b"\n\n" for r in stream.split(b"\n\n") if r]
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=records, chunk_delay=0.25)
    reply, pieces = stack.stream(CHAT, chat("give me the key", stream=True), {"x-test": "stream"})
    assert reply.status == 200
    text = openai_text(reply.body)
    assert OPENAI_KEY[:12] not in reply.body.decode()
    assert "Your key: [" in text and "ops@example.com" not in text and "[EMAIL]" in text and text.endswith("done.")
    last_chunk_written = upstream.chunk_times[CHAT][-1]
    assert pieces[0][0] < last_chunk_written, "the first bytes must reach the client before the upstream finishes"
    assert "content-length" not in reply.headers


def test_monitor_mode_changes_nothing_but_logs_would_deny(stack, upstream):
    reply = stack.post(CHAT, chat(f"key {AWS_KEY}"), {"x-test": "monitor", "x-request-id": "monitor-1"})
    assert reply.status == 200
    [received] = upstream.wait_for_requests(1)
    assert AWS_KEY in received.body.decode()
    record = stack.audit_for("monitor-1")
    assert record["decision"] == "allow" and record["would"] == ["would_deny"]
    assert record["hits"][0]["rule"] == "watch-secrets" and record["hits"][0]["mode"] == "monitor"


def test_invalid_json_gets_400_in_openai_format(stack, upstream):
    reply = stack.post(CHAT, None, {"x-test": "deny"}, raw=b'{"messages": [')
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_body_over_the_policy_limit_gets_413(stack, upstream):
    reply = stack.post(CHAT, chat("x" * 70000), {"x-test": "deny"})
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert upstream.requests == []


def test_non_llm_paths_pass_through_untouched(stack, upstream):
    upstream.respond("/v1/models", headers={"content-type": "application/json"}, body=b'{"data": []}')
    conn_reply = stack.post("/v1/models", None, raw=b"")
    assert conn_reply.status == 200 and conn_reply.body == b'{"data": []}'
    assert upstream.wait_for_requests(1)[0].path == "/v1/models"


def test_envoy_access_log_carries_the_policy_decision(stack):
    stack.post(CHAT, chat(f"x {AWS_KEY}"), {"x-test": "deny"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if '"policy_decision":"deny"' in stack.log("envoy").replace(" ", ""):
            return
        time.sleep(0.05)
    raise AssertionError("no access log line with the policy decision")


def test_invalid_policy_reload_keeps_the_old_policy(stack):
    stack.write_policy("version: 1\nrules:\n  - id: broken\n    detector: secrets\n    acton: deny\n")
    _wait_for_metric(stack, 'extproc_policy_reloads_total{result="invalid"} 1.0')
    reply = stack.post(CHAT, chat(f"k {AWS_KEY}"), {"x-test": "deny"})
    assert reply.status == 403  # the old policy still runs
    stack.write_policy(POLICY.replace("x-test: [deny]}", "x-test: [never]}"))
    _wait_for_metric(stack, 'extproc_policy_reloads_total{result="ok"} 1.0')
    assert stack.post(CHAT, chat(f"k {AWS_KEY}"), {"x-test": "deny"}).status == 200  # a valid change applies
    stack.write_policy(POLICY)
    _wait_for_metric(stack, 'extproc_policy_reloads_total{result="ok"} 2.0')


def test_audit_log_and_metrics_never_contain_a_planted_secret(stack):
    records = stack.audit_records()
    assert records, "expected audit records from the tests above"
    assert all("decision" in r and "policy" in r for r in records)
    exposed = stack.log("service") + stack.metrics() + stack.log("envoy")
    for secret in PLANTED + ["ops@example.com"]:
        assert secret not in exposed


def _wait_for_metric(stack, line, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in stack.metrics():
            return
        time.sleep(0.1)
    raise AssertionError(f"metric line {line!r} never appeared")

"""Chat history through real Envoy: a secret refused in one turn does not poison the chat. Chat UIs resend
the whole history, so the old turn is redacted before the upstream (`history: redact`, the default) and the
new turn is judged; `history: judge` keeps denying. Denials name the message. A streamed redaction reaches
Envoy's access log."""

import json

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
CHAT = "/v1/chat/completions"
POLICY = """version: 1
rules:
  - id: secrets-in-prompts
    detector: secrets
    direction: request
    action: deny
    match: {headers: {x-test: [default]}}
  - id: secrets-judged-in-history
    detector: secrets
    direction: request
    action: deny
    history: judge
    match: {headers: {x-test: [judge]}}
  - id: secrets-in-output
    detector: secrets
    direction: response
    action: redact
    match: {headers: {x-test: [stream-log]}}
"""
OK = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def conversation(*turns):
    roles = ["user", "assistant"]
    return {"model": "m", "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


def test_the_refused_turn_names_its_message(stack, upstream):
    reply = stack.post(CHAT, conversation("hi", "hello", f"use {AWS_KEY}"), {"x-test": "default"})
    assert reply.status == 403
    assert "messages[2] (user)" in reply.json()["error"]["message"]


def test_an_old_turn_with_a_finding_is_redacted_and_the_new_turn_goes_through(stack, upstream):
    upstream.respond(CHAT, headers={"content-type": "application/json"}, body=OK)
    reply = stack.post(CHAT, conversation(f"use {AWS_KEY}", "I cannot help with that.", "tell me a joke"),
                       {"x-test": "default"})
    assert reply.status == 200
    [received] = upstream.wait_for_requests(1)
    messages = received.json()["messages"]
    assert AWS_KEY not in json.dumps(messages) and "[AWS_ACCESS_KEY_ID]" in messages[0]["content"]
    assert messages[2]["content"] == "tell me a joke"


def test_history_judge_keeps_denying_the_old_turn(stack, upstream):
    reply = stack.post(CHAT, conversation(f"use {AWS_KEY}", "no", "tell me a joke"), {"x-test": "judge"})
    assert reply.status == 403
    assert "messages[0] (user)" in reply.json()["error"]["message"]


def access_log_for(stack, request_id, timeout=10.0):
    """Envoy's access-log line of the exchange sent with `x-request-id: request_id` (written when it ends)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in stack.log("envoy").splitlines():
            if line.startswith("{") and f'"{request_id}"' in line:
                return json.loads(line)
        time.sleep(0.02)
    raise AssertionError(f"no access-log line for {request_id}")


def test_a_streamed_redaction_reaches_envoys_access_log(stack, upstream):
    events = [{"choices": [{"index": 0, "delta": {"content": piece}}]}
              for piece in ["key: ", AWS_KEY[:8], AWS_KEY[8:], " done"]]
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"},
                     chunks=[b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"])
    reply, _ = stack.stream(CHAT, {**conversation("hi"), "stream": True},
                            {"x-test": "stream-log", "x-request-id": "stream-log-1"})
    assert reply.status == 200 and AWS_KEY[8:].encode() not in reply.body
    line = access_log_for(stack, "stream-log-1")
    assert line["policy_decision"] == "redact" and "secrets-in-output" in line["policy_rules"]

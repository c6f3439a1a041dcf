"""Chat history through real Envoy: a secret refused in one turn does not poison the chat. Chat UIs resend
the whole history, so the old turn is redacted before the upstream (`history: redact`, the default) and the
new turn is judged; `history: judge` keeps denying. Denials name the message."""

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

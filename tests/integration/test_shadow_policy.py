"""`serve --shadow-policy` through real Envoy: the candidate's decision is recorded per exchange, the client
and the upstream see only the active policy's effect, and the shadow file is hot-reloaded like the main one."""

import json
import os
import time

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
CHAT = "/v1/chat/completions"
ACTIVE = """version: 1
rules:
  - id: watch-secrets
    detector: secrets
    direction: request
    action: deny
    mode: monitor
"""
CANDIDATE = ACTIVE.replace("mode: monitor", "mode: enforce").replace("watch-secrets", "block-secrets")
OK = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    shadow_path = tmp_path_factory.mktemp("shadow") / "candidate.yaml"
    shadow_path.write_text(CANDIDATE)
    stack = make_stack(request, tmp_path_factory, upstream, ACTIVE,
                       service_args=("--shadow-policy", str(shadow_path)))
    stack.shadow_path = shadow_path
    return stack


def ask(stack, upstream, text, request_id):
    upstream.respond(CHAT, headers={"content-type": "application/json"}, body=OK)
    reply = stack.post(CHAT, {"model": "m", "messages": [{"role": "user", "content": text}]},
                       {"x-request-id": request_id})
    assert reply.status == 200  # the active policy only monitors: the shadow changes nothing
    upstream.wait_for_requests(1)
    return stack.audit_for(request_id)


def test_the_candidate_decision_is_recorded_and_nothing_changes(stack, upstream):
    record = ask(stack, upstream, f"use {AWS_KEY}", "shadow-1")
    assert record["decision"] == "allow" and record["would"] == ["would_deny"]
    assert record["shadow"]["decision"] == "deny" and record["shadow"]["differs"] is True
    assert 'extproc_shadow_differences_total{rule="block-secrets"} 1.0' in stack.metrics()


def test_the_shadow_policy_is_hot_reloaded(stack, upstream):
    tmp = str(stack.shadow_path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(ACTIVE)  # the candidate becomes the same as the active policy
    os.replace(tmp, stack.shadow_path)
    deadline = time.monotonic() + 20
    while '"role": "shadow"' not in stack.log("service") and '"role":"shadow"' not in stack.log("service"):
        assert time.monotonic() < deadline, "the shadow policy was not reloaded"
        time.sleep(0.05)
    record = ask(stack, upstream, f"use {AWS_KEY}", "shadow-2")
    assert record["shadow"]["decision"] == "allow" and record["shadow"]["differs"] is False

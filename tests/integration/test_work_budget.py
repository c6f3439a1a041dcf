"""The per-exchange detector CPU budget through real Envoy: an exchange that uses it up gets 503 in the API's
format with code `work_budget_exceeded` (its rules fail closed), nothing reaches the upstream, and the next
exchange is served as usual."""

import json

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

POLICY = """version: 1
settings: {max_exchange_cpu_ms: 5, max_request_bytes: 4194304}
rules:
  - id: ids-in-prompts
    detector: national_id
    direction: request
    action: deny
  - id: phones-in-prompts
    detector: phone
    direction: request
    action: deny
"""
OK = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def test_an_exchange_over_its_cpu_budget_is_refused_and_the_next_is_served(stack, upstream):
    prompt = " ".join(f"word{i % 97} and more plain prose" for i in range(30_000))  # ~900 KB to judge
    refused = stack.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}]},
                         {"x-request-id": "budget-1"})
    assert refused.status == 503 and refused.json()["error"]["code"] == "work_budget_exceeded"
    upstream.respond("/v1/chat/completions", headers={"content-type": "application/json"}, body=OK)
    ok = stack.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status == 200
    assert [r.path for r in upstream.wait_for_requests(1)] == ["/v1/chat/completions"]  # only the second
    assert stack.audit_for("budget-1")["code"] == "work_budget_exceeded"

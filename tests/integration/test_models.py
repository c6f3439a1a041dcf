"""The `models` check through a real Envoy: on Ollama's NDJSON API an alias is rewritten before the upstream
sees the request, a floating tag and a wrong digest are refused with 403 in Ollama's error format, a matching
digest passes; on an OpenAI SSE stream a chunk from another model ends the stream with the API's error event."""

import json

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

PINNED = "llama3.2:3b-instruct-q4_K_M"
DIGEST_OK = "3" * 64
DIGEST_PINNED_QWEN = "7" * 64
DIGEST_SERVED_QWEN = "8" * 64
POLICY = """version: 1
rules:
  - id: approved-models
    check: models
    params:
      allow: ["llama3.2:*", "qwen2.5:*", "gpt-4o*"]
      aliases: {{chat: "{pinned}"}}
      pins: {{"{pinned}": "sha256:{ok}", "qwen2.5:7b": "{qwen}"}}
      digest_source: {{url: "{url}", timeout: 2, refresh: 60}}
"""
TAGS = {"models": [{"name": PINNED, "model": PINNED, "digest": DIGEST_OK, "size": 1},
                   {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "digest": "sha256:" + DIGEST_SERVED_QWEN}]}


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    text = POLICY.format(pinned=PINNED, ok=DIGEST_OK, qwen=DIGEST_PINNED_QWEN, url=upstream.url)
    return make_stack(request, tmp_path_factory, upstream, text)


@pytest.fixture(autouse=True)
def tags(upstream):
    upstream.respond_always("/api/tags", headers={"content-type": "application/json"}, body=json.dumps(TAGS))


def ollama_lines(model, pieces):
    lines = [{"model": model, "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
    lines.append({"model": model, "message": {"role": "assistant", "content": ""}, "done": True})
    return [(json.dumps(line) + "\n").encode() for line in lines]


def chat(model):
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


def upstream_chats(upstream):
    return [r for r in upstream.requests if r.path == "/api/chat"]


def test_an_alias_is_rewritten_before_the_upstream_and_its_pinned_digest_passes(stack, upstream):
    upstream.respond("/api/chat", headers={"content-type": "application/x-ndjson"},
                     chunks=ollama_lines(PINNED, ["Hi ", "there"]))
    reply, _ = stack.stream("/api/chat", chat("chat"), {"x-request-id": "alias"})
    assert reply.status == 200
    assert "".join(json.loads(line)["message"]["content"] for line in reply.body.decode().splitlines()) == "Hi there"
    [sent] = upstream_chats(upstream)
    assert sent.json()["model"] == PINNED and sent.json()["messages"] == chat("chat")["messages"]
    assert int(sent.headers["content-length"]) == len(sent.body)
    record = stack.audit_for("alias")
    assert record["model"] == PINNED and record["requested_model"] == "chat"
    assert [h["label"] for h in record["hits"]] == ["model_alias"]


@pytest.mark.parametrize(("model", "code", "named"), [
    ("llama3.2:latest", "model_floating_tag", "llama3.2:latest"),
    ("llama3.2", "model_floating_tag", "llama3.2"),
    ("qwen2.5:7b", "model_digest_mismatch", "qwen2.5:7b"),
    ("mistral:7b", "model_not_allowed", "mistral:7b"),
])
def test_refusals_are_403_in_ollamas_error_format(stack, upstream, model, code, named):
    reply = stack.post("/api/chat", chat(model), {"x-request-id": f"refuse-{model}"})
    assert reply.status == 403
    assert set(reply.json()) == {"error"}
    assert f"'{named}'" in reply.json()["error"] and "approved-models" in reply.json()["error"]
    assert f"code={code}" in reply.headers["x-llm-policy"]
    assert upstream_chats(upstream) == []
    assert stack.audit_for(f"refuse-{model}")["code"] == code


def test_a_matching_pin_reaches_the_upstream_and_the_digest_table_is_cached(stack, upstream):
    for _ in range(3):
        assert stack.post("/api/chat", {**chat(PINNED), "stream": False}).status == 200
    assert len(upstream_chats(upstream)) == 3
    assert [r.path for r in upstream.requests].count("/api/tags") <= 1  # fetched at most once (refresh: 60 s)


def sse_chunk(model, text):
    return f"data: {json.dumps({'model': model, 'choices': [{'index': 0, 'delta': {'content': text}}]})}\n\n".encode()


def test_an_openai_stream_from_another_model_ends_with_the_error_event(stack, upstream):
    upstream.respond("/v1/chat/completions", headers={"content-type": "text/event-stream"},
                     chunks=[sse_chunk("gpt-4o-2024-08-06", "first "), sse_chunk("gpt-4o-mini", "second"),
                             b"data: [DONE]\n\n"], chunk_delay=0.05)
    reply, _ = stack.stream("/v1/chat/completions", {**chat("gpt-4o"), "stream": True},
                            {"x-request-id": "served-other"})
    body = reply.body.decode()
    assert reply.status == 200 and "first " in body and "second" not in body and "[DONE]" not in body
    last = json.loads(body.strip().split("\n\n")[-1][len("data: "):])
    assert last["error"]["code"] == "model_response_mismatch" and "'gpt-4o'" in last["error"]["message"]
    record = stack.audit_for("served-other")
    assert record["ended_stream_with_error"] is True and record["served_model"] == "gpt-4o-mini"

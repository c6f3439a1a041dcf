"""Bad input through a real Envoy 1.40: every malformed, oversized, oddly typed or compressed request gets a
clear 4xx in the API's own error format before the upstream sees anything (or passes through where that is
the documented behaviour), never a 5xx from the service and never a hang: every client call has a timeout.
The measured outcomes are tabulated in docs/faults.md."""

from __future__ import annotations

import gzip
import http.client
import json
import time

import pytest
from conftest import make_stack
from stack import Reply

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
OLLAMA = "/api/chat"
ANTHROPIC = "/v1/messages"
AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
SECRET = "sk-" + "Zq8Wm3Xv7Lp2Nr5Tb9Yc4Hd"
POLICY_LIMIT = 3 * 1024 * 1024 + 512 * 1024  # below Envoy's 4 MiB buffer limit, above a 100k-message body
CLIENT_TIMEOUT = 20.0

POLICY = f"""version: 1
settings: {{max_request_bytes: {POLICY_LIMIT}}}
rules:
  - id: deny-secrets-in-prompts
    detector: secrets
    direction: request
    action: deny
  - id: redact-test-secret
    detector: regex
    direction: request
    action: redact
    params: {{patterns: [{{label: test_secret, pattern: "sk-[A-Za-z0-9]{{20,40}}", max_length: 43}}]}}
"""


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def post(stack, path: str, body: bytes, headers: dict | None = None) -> tuple[Reply, float]:
    """POST raw bytes with a client-side timeout; (reply, seconds). A hang fails the test with a timeout."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    return reply, time.monotonic() - started


def chat(text: str = "hello", **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def openai_error(reply: Reply, status: int) -> dict:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["message"]
    return error


CONTROL = {"model": "m", "messages": [{"role": "user", "content": "control request"}]}


def assert_nothing_reached_upstream(upstream, stack) -> None:
    """A positive signal instead of waiting for nothing: a control request sent after the refused one must
    reach the upstream, and it must be the only request the upstream recorded."""
    upstream.respond(CHAT, headers={"content-type": "application/json"}, body=b'{"choices": []}')
    assert stack.post(CHAT, CONTROL).status == 200
    upstream.wait_for_requests(1)
    assert [r.json() for r in upstream.requests] == [CONTROL]


# ---- malformed JSON, in each API's own error format ------------------------------------------------------
@pytest.mark.parametrize("body", [b'{"messages": [', b"", b"{", b"not json", b'{"a":1}{"b":2}', b"\x00\x01\x02",
                                  b'{"messages": [NaN]}', b"[" * 10 + b"]" * 9],
                         ids=["truncated", "empty", "open-brace", "text", "two-docs", "binary", "nan", "unbalanced"])
def test_malformed_json_gets_400_in_openai_format(stack, upstream, body):
    reply, _ = post(stack, CHAT, body)
    error = openai_error(reply, 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_request"
    assert_nothing_reached_upstream(upstream, stack)


def test_malformed_json_gets_400_in_ollama_and_anthropic_formats(stack, upstream):
    reply, _ = post(stack, OLLAMA, b'{"messages": [')
    assert reply.status == 400 and set(reply.json()) == {"error"} and isinstance(reply.json()["error"], str)
    reply, _ = post(stack, ANTHROPIC, b'{"messages": [')
    assert reply.status == 400
    assert reply.json()["type"] == "error" and reply.json()["error"]["type"] == "invalid_request_error"
    assert_nothing_reached_upstream(upstream, stack)


# ---- wrong types ---------------------------------------------------------------------------------------
WRONG_TYPES = [
    ({"model": "m", "messages": "hello"}, "messages"),
    ({"model": "m", "messages": [1, 2]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "content"),
    (chat(stream="yes"), "stream"),
    (chat(model=["gpt"]), "model"),
    (chat(tools={"a": 1}), "tools"),
    ([chat()], "JSON object"),
    ("just a string", "JSON object"),
    (None, "JSON object"),
]


@pytest.mark.parametrize("doc,field", WRONG_TYPES, ids=[f for _, f in WRONG_TYPES])
def test_wrong_types_get_400_naming_the_field(stack, upstream, doc, field):
    reply, _ = post(stack, CHAT, json.dumps(doc).encode())
    error = openai_error(reply, 400)
    assert field in error["message"]
    assert_nothing_reached_upstream(upstream, stack)


# ---- size and shape extremes ----------------------------------------------------------------------------
def test_json_nested_100k_deep_gets_400(stack, upstream):
    """orjson refuses more than 1024 levels: a 100 000-deep document is malformed input, rejected at once."""
    body = b'{"model":"m","messages":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply, seconds = post(stack, CHAT, body)
    error = openai_error(reply, 400)
    assert "not valid JSON" in error["message"]
    assert seconds < 5
    assert_nothing_reached_upstream(upstream, stack)


def test_json_nested_within_the_limit_passes_untouched_when_nothing_needs_rewriting(stack, upstream):
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 60 + b"]" * 60 + b"}"
    reply, _ = post(stack, CHAT, body)
    assert reply.status == 200
    [received] = upstream.wait_for_requests(1)
    assert received.body == body  # forwarded byte-for-byte


def test_json_nested_300_deep_gets_400_not_503(stack, upstream):
    """Nesting beyond canonical_json.MAX_DEPTH (64) is refused before anything else (orjson also writes at
    most 254 levels, so such a document could not be re-encoded after a redaction)."""
    body = (b'{"model":"m","messages":[{"role":"user","content":"key ' + SECRET.encode() + b'"}],"x":' +
            b"[" * 300 + b"]" * 300 + b"}")
    reply, _ = post(stack, CHAT, body)
    error = openai_error(reply, 400)
    assert "nested" in error["message"]
    assert_nothing_reached_upstream(upstream, stack)


@pytest.mark.parametrize("junk", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"],
                         ids=["ff", "truncated-2-byte", "utf8-surrogate", "above-u10ffff"])
def test_invalid_utf8_in_a_json_string_gets_400(stack, upstream, junk):
    body = b'{"model":"m","messages":[{"role":"user","content":"a ' + junk + b' b"}]}'
    error = openai_error(post(stack, CHAT, body)[0], 400)
    assert error["code"] == "invalid_request"
    assert_nothing_reached_upstream(upstream, stack)


def test_lone_surrogate_escape_gets_400(stack, upstream):
    error = openai_error(post(stack, CHAT, b'{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}')[0],
                         400)
    assert error["code"] == "invalid_request"
    assert_nothing_reached_upstream(upstream, stack)


def test_body_over_the_policy_limit_gets_413_in_api_format(stack, upstream):
    body = json.dumps(chat("x" * (POLICY_LIMIT + 1000))).encode()
    assert len(body) < 4 * 1024 * 1024
    error = openai_error(post(stack, CHAT, body)[0], 413)
    assert error["code"] == "payload_too_large"
    assert_nothing_reached_upstream(upstream, stack)


def test_body_over_envoys_buffer_limit_gets_envoys_plain_413(stack, upstream):
    """Above per_connection_buffer_limit_bytes (4 MiB) Envoy answers before the service sees the body."""
    body = json.dumps(chat("x" * (4 * 1024 * 1024 + 100))).encode()
    try:
        reply, _ = post(stack, CHAT, body)
    except (ConnectionResetError, BrokenPipeError):  # Envoy may reply and close while we are still sending
        assert_nothing_reached_upstream(upstream, stack)
        return
    assert reply.status == 413
    assert_nothing_reached_upstream(upstream, stack)


def test_empty_body_on_an_llm_path_gets_400(stack, upstream):
    error = openai_error(post(stack, CHAT, b"", {"content-length": "0"})[0], 400)
    assert "no body" in error["message"] or "not valid JSON" in error["message"]
    assert_nothing_reached_upstream(upstream, stack)


# ---- content type and content encoding ---------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/octet-stream", ""])
def test_content_type_is_not_trusted_a_json_body_is_scanned_whatever_it_says(stack, upstream, content_type):
    """Model servers (Ollama, vLLM) parse the body as JSON whatever its content-type (curl -d sends
    x-www-form-urlencoded), so the gateway does too: a label cannot smuggle a secret past the scan."""
    reply, _ = post(stack, CHAT, json.dumps(chat(f"key {AWS_KEY}")).encode(), {"content-type": content_type})
    assert openai_error(reply, 403)["code"] == "policy_violation"
    assert_nothing_reached_upstream(upstream, stack)


def test_non_json_body_under_a_non_json_content_type_gets_400(stack, upstream):
    reply, _ = post(stack, CHAT, b"model=m&prompt=hello", {"content-type": "application/x-www-form-urlencoded"})
    assert openai_error(reply, 400)["code"] == "invalid_request"
    assert_nothing_reached_upstream(upstream, stack)


def test_clean_json_under_text_plain_passes(stack, upstream):
    reply, _ = post(stack, CHAT, json.dumps(chat("hello")).encode(), {"content-type": "text/plain"})
    assert reply.status == 200
    assert upstream.wait_for_requests(1)[0].json()["messages"][0]["content"] == "hello"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "gzip, identity", "GZIP"])
def test_content_encoded_request_body_gets_415(stack, upstream, encoding):
    """A compressed body cannot be inspected: refused before the body is even read, in the API's format."""
    body = gzip.compress(json.dumps(chat(f"key {AWS_KEY}")).encode())
    reply, _ = post(stack, CHAT, body, {"content-encoding": encoding})
    error = openai_error(reply, 415)
    assert error["code"] == "unsupported_content_encoding"
    assert_nothing_reached_upstream(upstream, stack)


def test_content_encoded_request_in_ollama_and_anthropic_formats(stack, upstream):
    body = gzip.compress(json.dumps(chat()).encode())
    reply, _ = post(stack, OLLAMA, body, {"content-encoding": "gzip"})
    assert reply.status == 415 and "uncompressed" in reply.json()["error"]
    reply, _ = post(stack, ANTHROPIC, body, {"content-encoding": "gzip"})
    assert reply.status == 415 and reply.json()["type"] == "error"
    assert_nothing_reached_upstream(upstream, stack)


def test_identity_content_encoding_passes(stack, upstream):
    reply, _ = post(stack, CHAT, json.dumps(chat()).encode(), {"content-encoding": "identity"})
    assert reply.status == 200


def test_content_encoding_on_any_path_with_a_body_gets_415(stack, upstream):
    """A compressed body on a path no shape serves may still be JSON a model server inflates and reads
    (aiohttp, like many servers, inflates a gzip request body): it cannot be inspected, so it is refused."""
    reply, _ = post(stack, "/upload", gzip.compress(b'{"prompt":"x"}'), {"content-encoding": "gzip"})
    assert openai_error(reply, 415)["code"] == "unsupported_content_encoding"
    upstream.respond("/upload", headers={"content-type": "application/json"}, body=b"{}")
    reply, _ = post(stack, "/upload", b"plain=data")  # the positive control: uncompressed non-JSON passes
    assert reply.status == 200
    [received] = upstream.wait_for_requests(1)
    assert received.body == b"plain=data"


# ---- 100 000 messages: last, because a scan Envoy gave up on still occupies the worker afterwards -------
def test_100k_messages_are_scanned_and_forwarded_or_refused_within_the_work_budget(stack, upstream):
    """3.1 MB, 100 000 messages: every message is scanned and the request goes on, or the exchange uses up its
    detector CPU budget and is refused in the API's format (503 work_budget_exceeded); never a timeout."""
    body = json.dumps(chat() | {"messages": [{"role": "user", "content": "hi"}] * 100_000}).encode()
    reply, _ = post(stack, CHAT, body)
    if reply.status == 503:
        assert openai_error(reply, 503)["code"] == "work_budget_exceeded"
        assert_nothing_reached_upstream(upstream, stack)
        return
    assert reply.status == 200, reply.body[:200]
    [received] = upstream.wait_for_requests(1, timeout=10)
    assert len(received.json()["messages"]) == 100_000


def test_100k_messages_with_one_secret_are_refused(stack, upstream):
    """The secret is in the last message: it is found (403), or the budget runs out before it and the rules
    fail closed (503); either way nothing reaches the upstream."""
    messages = [{"role": "user", "content": "hi"}] * 99_999 + [{"role": "user", "content": f"key {AWS_KEY}"}]
    reply, _ = post(stack, CHAT, json.dumps(chat() | {"messages": messages}).encode())
    expected = {403: "policy_violation", 503: "work_budget_exceeded"}
    assert reply.status in expected, reply.body[:200]
    assert openai_error(reply, reply.status)["code"] == expected[reply.status]
    assert_nothing_reached_upstream(upstream, stack)

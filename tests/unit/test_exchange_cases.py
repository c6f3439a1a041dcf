"""`policy test` exchange cases: a whole request/response through a Session, as checks need."""

from __future__ import annotations

from extproc.exchange_cases import run_exchange
from tests.policies import policy

CLAMP_AND_REDACT = policy("""
version: 1
settings:
  limits: {max_output_tokens: 100}
rules:
  - id: email-out
    detector: email
    direction: response
    action: redact
""")


def test_a_rewritten_request_body_and_a_redacted_stream_are_reported():
    result = run_exchange(CLAMP_AND_REDACT, {
        "request": {"model": "m", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]},
        "stream": [{"choices": [{"index": 0, "delta": {"content": "write to a@b.com"}}]}, "[DONE]"],
    })
    assert result.decision == "redact"
    assert result.request_body["max_tokens"] == 100
    assert b"a@b.com" not in result.client_bytes and b"[EMAIL]" in result.client_bytes
    assert result.client_bytes.endswith(b"data: [DONE]\n\n")


def test_a_refused_request_reports_its_status_and_code():
    result = run_exchange(CLAMP_AND_REDACT, {"path": "/api/chat", "request": {"model": "m", "messages": "x"}})
    assert (result.decision, result.status, result.code) == ("reject", 400, "invalid_request")


def test_a_buffered_response_is_scanned():
    result = run_exchange(CLAMP_AND_REDACT, {
        "path": "/api/chat",
        "request": {"model": "m", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
        "response": {"model": "m", "message": {"role": "assistant", "content": "mail x@y.org"}, "done": True},
    })
    assert result.decision == "redact" and b"[EMAIL]" in result.client_bytes

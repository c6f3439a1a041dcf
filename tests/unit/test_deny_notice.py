"""A stream ended by a deny tells the user in a way common clients show: Ollama's closing {"error"} line is
dropped by Open WebUI, so Ollama gets a last assistant chunk with done:true; OpenAI gets the chunk then the
error event its SDKs raise on; the Responses API also gets `response.failed`; `stream_deny_notice` overrides."""

import orjson
import pytest
from policies import policy
from sessions import request_body, request_headers, response_body, response_headers

from extproc.session import Session

SECRET = "sk-" + "Q" * 12 + "w" * 12
RULE = """
rules:
  - id: no-keys-out
    detector: regex
    direction: response
    action: deny
    params: {patterns: [{label: key, pattern: "sk-[A-Za-z0-9]{20,40}", max_length: 43}]}
"""


def denied_stream(path, content_type, records, notice=None):
    settings = f"settings: {{stream_deny_notice: {notice}}}\n" if notice else ""
    session = Session(policy("version: 1\n" + settings + RULE))
    session.handle(request_headers(path=path))
    session.handle(request_body({"model": "m", "stream": True, "prompt": "p", "input": "i",
                                 "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers(content_type))
    return session.handle(response_body(records, True)).response_body.response.body_mutation.body


def test_ollama_gets_a_last_chunk_with_done_and_no_error_line():
    line = orjson.dumps({"message": {"role": "assistant", "content": f"k {SECRET}"}, "done": False}) + b"\n"
    out = denied_stream("/api/chat", "application/x-ndjson", line)
    last = orjson.loads(out.splitlines()[-1])
    assert last["done"] is True and "stopped by policy" in last["message"]["content"]
    assert b'"error"' not in out and SECRET.encode() not in out


def test_openai_gets_the_chunk_then_the_error_event_and_content_mode_ends_with_done():
    event = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"k {SECRET}"}}]}) + b"\n\n"
    out = denied_stream("/v1/chat/completions", "text/event-stream", event)
    records = [r for r in out.split(b"\n\n") if r]
    assert b"stopped by policy" in records[0] and b'"error"' in records[-1]
    out = denied_stream("/v1/chat/completions", "text/event-stream", event, notice="content")
    assert out.endswith(b"data: [DONE]\n\n") and b'"error"' not in out


@pytest.mark.parametrize("notice", ["error", None])
def test_anthropic_and_error_mode_end_with_the_error_event_only(notice):
    event = (b"event: content_block_delta\ndata: " + orjson.dumps(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"k {SECRET}"}}) +
        b"\n\n")
    out = denied_stream("/v1/messages", "text/event-stream", event, notice)
    assert out.startswith(b"event: error") and b"stopped by policy" not in out


def test_the_responses_api_also_gets_response_failed():
    event = b"event: response.output_text.delta\ndata: " + orjson.dumps(
        {"type": "response.output_text.delta", "delta": f"k {SECRET}"}) + b"\n\n"
    out = denied_stream("/v1/responses", "text/event-stream", event)
    assert b"event: error" in out and b"event: response.failed" in out and SECRET.encode() not in out

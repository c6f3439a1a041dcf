"""Issue 13, class (g): responses, through real Envoy with the strict policy (secrets and card numbers
redacted in output), read on the client side the way real clients read them: the official `openai` and
`anthropic` SDKs, a line-based NDJSON reader for Ollama, and the raw bytes for what a lenient SSE reader
keeps after `[DONE]`. The Go upstream answers a reply scripted per request. Each case: the client's parsed
view holds no planted secret."""

import json

import pytest
from clients import (
    HELLO,
    JSON,
    NDJSON,
    SSE,
    anthropic_events,
    anthropic_view,
    chunk,
    completion,
    ollama_line,
    ollama_view,
    openai_view,
    sse,
    text_block,
    tool_block,
)
from harness import (
    ALLOWED_OPENAI,
    AWS_KEY,
    found,
    go_upstream,
    new_request_id,
    stack_fixture,
)

pytestmark = pytest.mark.integration
SECRET_TEXT = f"your key is {AWS_KEY} ok"

go = stack_fixture(go_upstream)


# ---- openai SDK: buffered JSON and SSE, labelled truthfully (controls) and falsely ----

@pytest.mark.parametrize("content_type", [JSON, "text/html", "application/octet-stream", "text/plain"])
def test_g_buffered_json_labelled_any_type(go, content_type):
    view = openai_view(go, [completion({"content": SECRET_TEXT})], stream=False, content_type=content_type)
    assert not found(view), view


@pytest.mark.parametrize("content_type", [SSE, "text/plain", "application/octet-stream", JSON])
def test_g_sse_labelled_any_type(go, content_type):
    chunks = sse([chunk({"role": "assistant", "content": "Here: "}), chunk({"content": SECRET_TEXT}),
                  chunk({}, "stop"), b"data: [DONE]\n\n"])
    view = openai_view(go, chunks, stream=True, content_type=content_type)
    assert not found(view), view


@pytest.mark.parametrize("status", [400, 404, 500])
def test_g_error_bodies_echoing_a_secret(go, status):
    body = json.dumps({"error": {"message": f"bad prompt: {SECRET_TEXT}", "type": "invalid_request_error"}})
    view = openai_view(go, [body.encode()], stream=False, content_type=JSON, status=status)
    assert not found(view), view


def test_g_gzip_json(go):
    view = openai_view(go, [completion({"content": SECRET_TEXT})], stream=False, content_type=JSON, gzip=True)
    assert not found(view), view


def test_g_gzip_sse(go):
    chunks = sse([chunk({"role": "assistant", "content": SECRET_TEXT}), chunk({}, "stop"), b"data: [DONE]\n\n"])
    view = openai_view(go, chunks, stream=True, content_type=SSE, gzip=True)
    assert not found(view), view


def test_g_sse_text_after_finish_reason(go):
    chunks = sse([chunk({"role": "assistant", "content": "Done."}), chunk({}, "stop"),
                  chunk({"content": SECRET_TEXT}), b"data: [DONE]\n\n"])
    view = openai_view(go, chunks, stream=True, content_type=SSE)
    assert not found(view), view


def test_g_sse_bytes_after_done(go):
    """The SDK stops at [DONE]; a line-based SSE reader (curl, a proxy, another SDK) does not."""
    stack, upstream = go
    request_id = new_request_id()
    chunks = sse([chunk({"role": "assistant", "content": "Done."}), chunk({}, "stop"), b"data: [DONE]\n\n",
                  chunk({"content": SECRET_TEXT})])
    upstream.program(request_id, chunks, headers={"content-type": SSE})
    reply, _ = stack.stream("/v1/chat/completions", {"model": ALLOWED_OPENAI, "messages": HELLO, "stream": True},
                            {"x-request-id": request_id})
    upstream.wait_for(request_id)
    assert AWS_KEY not in reply.body.decode("utf-8", "replace"), reply.body


# ---- tool-call arguments: JSON inside a JSON string, with escapes the inner decode resolves ----

ESCAPED_ARGUMENTS = {
    "newline-escape": '{"cmd": "export K=\\n' + AWS_KEY + '"}',
    "unicode-escape": '{"cmd": "\\u0041' + AWS_KEY[1:] + '"}',
    "tab-escape-everywhere": '{"cmd": "\\t' + "".join(f"\\u00{ord(c):02x}" for c in AWS_KEY) + '"}',
}


@pytest.mark.parametrize("case", ESCAPED_ARGUMENTS)
def test_g_buffered_tool_call_arguments_with_escapes(go, case):
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ESCAPED_ARGUMENTS[case]}}
    view = openai_view(go, [completion({"content": None, "tool_calls": [call]})], stream=False,
                       content_type=JSON, tools=True)
    assert not found(view), view


@pytest.mark.parametrize("case", ESCAPED_ARGUMENTS)
def test_g_streamed_tool_call_arguments_with_escapes(go, case):
    arguments = ESCAPED_ARGUMENTS[case]
    pieces = [arguments[i:i + 7] for i in range(0, len(arguments), 7)]
    head = chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                       "function": {"name": "lookup", "arguments": ""}}]})
    events = [head] + [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    chunks = sse(events + [chunk({}, "tool_calls"), b"data: [DONE]\n\n"])
    view = openai_view(go, chunks, stream=True, content_type=SSE, tools=True)
    assert not found(view), view


# ---- anthropic SDK: the stream helper's final message ----

@pytest.mark.parametrize("case", ESCAPED_ARGUMENTS)
def test_g_anthropic_input_json_delta_with_escapes(go, case):
    arguments = ESCAPED_ARGUMENTS[case]
    view = anthropic_view(go, anthropic_events(tool_block([arguments[i:i + 5] for i in range(0, len(arguments), 5)])))
    assert not found(view), view


def test_g_anthropic_text_after_content_block_stop(go):
    text = text_block(["Done."]) + [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": SECRET_TEXT}}]
    view = anthropic_view(go, anthropic_events(text))
    assert not found(view), view


# ---- Ollama: a line-based NDJSON reader ----

def test_g_ollama_line_after_done(go):
    view = ollama_view(go, [ollama_line("Done."), ollama_line("", True), ollama_line(SECRET_TEXT)])
    assert not found(view), view


@pytest.mark.parametrize("content_type", [NDJSON, "text/plain", "application/octet-stream", JSON])
def test_g_ollama_ndjson_labelled_any_type(go, content_type):
    view = ollama_view(go, [ollama_line("Here: "), ollama_line(SECRET_TEXT), ollama_line("", True)], content_type)
    assert not found(view), view


def test_g_ollama_gzip_ndjson(go):
    view = ollama_view(go, [ollama_line(SECRET_TEXT), ollama_line("", True)], gzip_body=True)
    assert not found(view), view


def test_g_ollama_thinking_then_answer(go):
    lines = [ollama_line("hmm ", field="thinking"), ollama_line(SECRET_TEXT), ollama_line("", True)]
    view = ollama_view(go, lines)
    assert not found(view), view

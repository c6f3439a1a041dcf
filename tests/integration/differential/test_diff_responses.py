"""Issue 13, class (g): responses, through real Envoy with the strict policy (secrets and card numbers
redacted in output), read on the client side the way real clients read them: the official `openai` and
`anthropic` SDKs, a line-based NDJSON reader for Ollama, and the raw bytes for what a lenient SSE reader
keeps after `[DONE]`. The Go upstream answers a reply scripted per request. Each case: the client's parsed
view holds no planted secret."""

import gzip as gzip_module
import json

import anthropic
import openai
import pytest
from harness import (
    ALLOWED_CLAUDE,
    ALLOWED_OLLAMA,
    ALLOWED_OPENAI,
    AWS_KEY,
    found,
    go_upstream,
    new_request_id,
    stack_fixture,
)

pytestmark = pytest.mark.integration
SECRET_TEXT = f"your key is {AWS_KEY} ok"
HELLO = [{"role": "user", "content": "hello"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
SSE, NDJSON, JSON = "text/event-stream", "application/x-ndjson", "application/json"

go = stack_fixture(go_upstream)


def sse(events) -> list[bytes]:
    return [(e if isinstance(e, bytes) else f"data: {json.dumps(e)}\n\n".encode()) for e in events]


def chunk(delta, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": ALLOWED_OPENAI,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def completion(message):
    return json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": ALLOWED_OPENAI,
                       "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def openai_client(stack, request_id):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{stack.listen_port}/v1", api_key="k", max_retries=0,
                         default_headers={"x-request-id": request_id})


def openai_view(go, chunks, *, stream, content_type, status=200, gzip=False, tools=False):
    """What the openai SDK hands the application: message text, tool calls with decoded arguments, errors."""
    stack, upstream = go
    request_id = new_request_id()
    upstream.program(request_id, chunks, status=status, headers={"content-type": content_type}, gzip=gzip)
    extra = {"tools": [LOOKUP]} if tools else {}
    try:
        reply = openai_client(stack, request_id).chat.completions.create(
            model=ALLOWED_OPENAI, messages=HELLO, stream=stream, **extra)
        parts = [c.model_dump() for c in reply] if stream else [reply.model_dump()]
    except openai.APIError as exc:
        parts = [str(exc), getattr(exc, "body", None)]
    upstream.wait_for(request_id)
    return parts + [decoded_arguments(parts)]


def decoded_arguments(parts) -> list:
    """Tool-call arguments as the application reads them (json.loads of the joined fragments)."""
    joined: dict[int, str] = {}
    for part in parts:
        for choice in (part or {}).get("choices", []) if isinstance(part, dict) else []:
            calls = (choice.get("delta") or choice.get("message") or {}).get("tool_calls") or []
            for call in calls:
                index = call.get("index") or 0
                joined[index] = joined.get(index, "") + ((call.get("function") or {}).get("arguments") or "")
    out = []
    for text in joined.values():
        try:
            out.append(json.loads(text))
        except ValueError:
            out.append(text)
    return out


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

def anthropic_events(blocks) -> list[bytes]:
    start = {"type": "message_start", "message": {
        "id": "m1", "type": "message", "role": "assistant", "model": ALLOWED_CLAUDE, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}
    end = [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2}}, {"type": "message_stop"}]
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in [start, *blocks, *end]]


def anthropic_view(go, chunks):
    stack, upstream = go
    request_id = new_request_id()
    upstream.program(request_id, chunks, headers={"content-type": SSE})
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.listen_port}", api_key="k", max_retries=0,
                                 default_headers={"x-request-id": request_id})
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    try:
        with client.messages.stream(model=ALLOWED_CLAUDE, max_tokens=16, messages=HELLO, tools=tools) as stream:
            view = [event.model_dump() for event in stream] + [stream.get_final_message().model_dump()]
    except anthropic.APIError as exc:
        view = [str(exc), getattr(exc, "body", None)]
    upstream.wait_for(request_id)
    return view


def tool_block(pieces):
    return ([{"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "t1", "name": "lookup", "input": {}}}]
        + [{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}}
           for p in pieces] + [{"type": "content_block_stop", "index": 0}])


@pytest.mark.parametrize("case", ESCAPED_ARGUMENTS)
def test_g_anthropic_input_json_delta_with_escapes(go, case):
    arguments = ESCAPED_ARGUMENTS[case]
    view = anthropic_view(go, anthropic_events(tool_block([arguments[i:i + 5] for i in range(0, len(arguments), 5)])))
    assert not found(view), view


def test_g_anthropic_text_after_content_block_stop(go):
    text = [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Done."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": SECRET_TEXT}}]
    view = anthropic_view(go, anthropic_events(text))
    assert not found(view), view


# ---- Ollama: a line-based NDJSON reader ----

def ollama_view(go, lines, content_type=NDJSON, stream=True, gzip=False):
    stack, upstream = go
    request_id = new_request_id()
    upstream.program(request_id, [(json.dumps(x) + "\n").encode() for x in lines],
                     headers={"content-type": content_type}, gzip=gzip)
    reply, _ = stack.stream("/api/chat", {"model": ALLOWED_OLLAMA, "messages": HELLO, "stream": stream},
                            {"x-request-id": request_id})
    upstream.wait_for(request_id)
    body = gzip_module.decompress(reply.body) if reply.headers.get("content-encoding") == "gzip" else reply.body
    return [json.loads(line) for line in body.decode("utf-8", "replace").splitlines() if line.strip()]


def ollama_line(content, done=False):
    return {"model": ALLOWED_OLLAMA, "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content}, "done": done}


def test_g_ollama_line_after_done(go):
    view = ollama_view(go, [ollama_line("Done."), ollama_line("", True), ollama_line(SECRET_TEXT)])
    assert not found(view), view


@pytest.mark.parametrize("content_type", [NDJSON, "text/plain", "application/octet-stream", JSON])
def test_g_ollama_ndjson_labelled_any_type(go, content_type):
    view = ollama_view(go, [ollama_line("Here: "), ollama_line(SECRET_TEXT), ollama_line("", True)], content_type)
    assert not found(view), view


def test_g_ollama_gzip_ndjson(go):
    view = ollama_view(go, [ollama_line(SECRET_TEXT), ollama_line("", True)], gzip=True)
    assert not found(view), view


def test_g_ollama_thinking_then_answer(go):
    lines = [{**ollama_line(""), "message": {"role": "assistant", "content": "", "thinking": "hmm "}},
             ollama_line(SECRET_TEXT), ollama_line("", True)]
    view = ollama_view(go, lines)
    assert not found(view), view

"""`check: tools` through a real Envoy on OpenAI SSE: a disallowed streamed tool call ends the stream with the
error event and the client never sees its name or arguments; an allowed one passes byte-for-byte; a
disallowed declared tool is stripped before the upstream sees the request."""

import json

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

PATH = "/v1/chat/completions"
POLICY = """version: 1
rules:
  - id: tools
    check: tools
    params:
      allow: [get_weather]
      arguments: {get_weather: {type: object, required: [city]}}
"""
SECRET_ARG = "silo-7-launch-code"


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def tool_call_stream(name, arguments):
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking. "}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                                 "function": {"name": name, "arguments": ""}}]}}]}]
    events += [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}]}
               for piece in (arguments[:6], arguments[6:15], arguments[15:])]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return [("data: " + json.dumps(e) + "\n\n").encode() for e in events] + [b"data: [DONE]\n\n"]


def payload(*names):
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}],
            "tools": [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                      for n in names]}


def test_a_disallowed_streamed_call_ends_the_stream_without_leaking(stack, upstream):
    chunks = tool_call_stream("launch_missiles", json.dumps({"code": SECRET_ARG}))
    upstream.respond(PATH, headers={"content-type": "text/event-stream"}, chunks=chunks, chunk_delay=0.02)
    reply, _ = stack.stream(PATH, payload("get_weather"), {"x-request-id": "tools-deny"})
    body = reply.body.decode()
    assert reply.status == 200
    assert "launch_missiles" not in body and SECRET_ARG not in body and "call_1" not in body
    assert body.startswith(chunks[0].decode())  # the text before the call was not held for it
    error = json.loads(body.rstrip().rsplit("data: ", 1)[1])["error"]
    assert error["code"] == "tool_not_allowed" and error["type"] == "policy_violation"
    record = stack.audit_for("tools-deny")
    assert record["code"] == "tool_not_allowed" and record["ended_stream_with_error"] is True
    assert record["tool_calls"] == ["<undeclared>"]


def test_an_allowed_call_passes_byte_for_byte(stack, upstream):
    chunks = tool_call_stream("get_weather", json.dumps({"city": "Oslo", "unit": "celsius"}))
    upstream.respond(PATH, headers={"content-type": "text/event-stream"}, chunks=chunks, chunk_delay=0.02)
    reply, _ = stack.stream(PATH, payload("get_weather"), {"x-request-id": "tools-allow"})
    assert reply.status == 200 and reply.body == b"".join(chunks)
    assert stack.audit_for("tools-allow")["decision"] == "allow"


def test_a_disallowed_declared_tool_is_stripped_before_the_upstream(stack, upstream):
    chunks = tool_call_stream("get_weather", json.dumps({"city": "Oslo"}))
    upstream.respond(PATH, headers={"content-type": "text/event-stream"}, chunks=chunks)
    request = {**payload("shell", "get_weather"), "tool_choice": "auto", "x_vendor": {"keep": True}}
    reply, _ = stack.stream(PATH, request, {"x-request-id": "tools-strip"})
    assert reply.status == 200 and reply.body == b"".join(chunks)
    [sent] = upstream.wait_for_requests(1)
    body = sent.json()
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["x_vendor"] == {"keep": True} and body["tool_choice"] == "auto"
    assert int(sent.headers["content-length"]) == len(sent.body)
    record = stack.audit_for("tools-strip")
    assert record["decision"] == "redact" and record["tools_stripped"] == ["shell"]

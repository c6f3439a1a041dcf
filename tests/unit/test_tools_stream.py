"""Streamed tool calls: assembled from their fragments and checked before any byte of the call is released,
whatever the chunking; a refused call ends the stream with the shape's error event and none of it leaks."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from extproc.session import Session
from tests import sessions
from tests.policies import policy

POLICY = policy("""
version: 1
settings: {max_stream_held_bytes: 2048, on_stream_limit: fail_open, stream_deny_notice: error}
rules:
  - id: tools
    check: tools
    params: {allow: [get_weather, send_email], approval_required: [send_email],
             arguments: {get_weather: {required: [city]}}}
  - id: key-out
    detector: regex
    direction: response
    action: redact
    params: {patterns: [{label: key, pattern: "KEY-[0-9]{6}", max_length: 10}]}
""")
TOOLS_ONLY = policy("""
version: 1
settings: {stream_deny_notice: error}
rules:
  - id: tools
    check: tools
    params: {allow: [get_weather]}
""")
MONITOR = policy("""
version: 1
rules:
  - id: tools
    check: tools
    mode: monitor
    params: {allow: [get_weather]}
""")
TOOLS = ["get_weather", "send_email", "launch_rockets"]
SECRET_ARG = "Vostok-7f3a"  # appears only inside the refused call's arguments


def sse(event) -> bytes:
    if isinstance(event, tuple):
        return f"event: {event[0]}\ndata: ".encode() + orjson.dumps(event[1]) + b"\n\n"
    return b"data: " + (b"[DONE]" if event == "[DONE]" else orjson.dumps(event)) + b"\n\n"


def openai_stream(name: str, arguments: str) -> bytes:
    pieces = [arguments[:5], arguments[5:14], arguments[14:]]
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me check. "}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                                 "function": {"name": name, "arguments": ""}}]}}]}]
    events += [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}}]}
               for p in pieces if p]
    events += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}, "[DONE]"]
    return b"".join(map(sse, events))


def anthropic_stream(name: str, arguments: str) -> bytes:
    events = [("message_start", {"type": "message_start", "message": {"role": "assistant", "content": []}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "Let me check. "}}),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                  "type": "tool_use", "id": "t1", "name": name, "input": {}}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": arguments[i:i + 7]}}) for i in range(0, len(arguments), 7)]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 1}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
               ("message_stop", {"type": "message_stop"})]
    return b"".join(map(sse, events))


def responses_stream(name: str, arguments: str) -> bytes:
    item = {"type": "function_call", "id": "fc1", "call_id": "c1", "name": name}
    events = [("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                              "item": {**item, "arguments": ""}})]
    events += [("response.function_call_arguments.delta", {
        "type": "response.function_call_arguments.delta", "output_index": 0, "delta": arguments[i:i + 9]})
        for i in range(0, len(arguments), 9)]
    events += [("response.function_call_arguments.done", {"type": "response.function_call_arguments.done",
                                                          "output_index": 0, "arguments": arguments}),
               ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                              "item": {**item, "arguments": arguments}}),
               ("response.completed", {"type": "response.completed", "response": {
                   "output": [{**item, "arguments": arguments}]}})]
    return b"".join(map(sse, events))


def ollama_stream(name: str, arguments: str) -> bytes:
    lines = [{"message": {"role": "assistant", "content": "Let me check. "}, "done": False},
             {"message": {"role": "assistant", "content": "", "tool_calls": [
                 {"function": {"name": name, "arguments": orjson.loads(arguments)}}]}, "done": False},
             {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 3}]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


STREAMS = {
    "openai_chat": ("/v1/chat/completions", "text/event-stream", openai_stream, b"policy_violation"),
    "anthropic_messages": ("/v1/messages", "text/event-stream", anthropic_stream, b"event: error"),
    "openai_responses": ("/v1/responses", "text/event-stream", responses_stream, b"event: error"),
    "ollama_chat": ("/api/chat", "application/x-ndjson", ollama_stream, b'{"error":'),
}


def request_for(shape: str) -> dict:
    tools = [{"type": "function", "function": {"name": n}, "name": n} for n in TOOLS]
    doc = {"model": "m", "stream": True, "tools": tools, "max_tokens": 50}
    if shape == "openai_responses":
        return {**doc, "input": "weather?"}
    return {**doc, "messages": [{"role": "user", "content": "weather?"}]}


async def _exchange(compiled, shape: str, chunks: list[bytes]) -> tuple[bytes, Session]:
    path, content_type, _, _ = STREAMS[shape]
    session = Session(compiled)
    session.handle(sessions.request_headers(path))
    reply = await sessions.handle(session, sessions.request_body(request_for(shape)))
    assert not reply.HasField("immediate_response")
    session.handle(sessions.response_headers(content_type))
    out = b""
    for number, chunk in enumerate(chunks, 1):
        mutation = session.handle(sessions.response_body(chunk, number == len(chunks))).response_body.response \
            .body_mutation
        out += mutation.body if mutation.HasField("body") or mutation.clear_body else chunk
    work = session.finish()
    if work is not None:
        await work
    return out, session


def exchange(compiled, shape: str, chunks: list[bytes]) -> tuple[bytes, Session]:
    return asyncio.run(_exchange(compiled, shape, chunks))


def splits(body: bytes, seed: int = 7) -> list[list[bytes]]:
    """The body whole, per byte, in two at every boundary, and at seeded random cuts."""
    rng = random.Random(seed)
    ways = [[body], [body[i:i + 1] for i in range(len(body))]]
    ways += [[body[:i], body[i:]] for i in range(1, len(body))]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(body)), 6))
        ways.append([body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])])
    return ways


@pytest.mark.parametrize("compiled", [POLICY, TOOLS_ONLY], ids=["with_text_rule", "tools_only"])
@pytest.mark.parametrize("shape", sorted(STREAMS))
def test_a_refused_call_never_reaches_the_client_at_any_split(shape, compiled):
    _, _, make, error_marker = STREAMS[shape]
    body = make("launch_rockets", '{"target": "' + SECRET_ARG + '"}')
    for chunks in splits(body):
        out, session = exchange(compiled, shape, chunks)
        assert b"launch_rockets" not in out and SECRET_ARG.encode() not in out, chunks
        assert error_marker in out and out.endswith(session.shape.stream_error_event(
            "tool_not_allowed", session.record.as_fields()["reason"]))
        assert session.record.as_fields()["code"] == "tool_not_allowed" and session.record.as_fields()["ended_stream_with_error"]


@pytest.mark.parametrize("shape", sorted(STREAMS))
def test_an_allowed_call_passes_byte_for_byte_at_any_split(shape):
    _, _, make, _ = STREAMS[shape]
    body = make("get_weather", '{"city": "Oslo", "unit": "celsius"}')
    for chunks in splits(body)[:1] + splits(body)[2::7]:
        out, session = exchange(POLICY, shape, chunks)
        assert out == body, chunks
        assert session.record.as_fields().get("code") is None and session.record.as_fields()["tool_calls"] == ["get_weather"]


@pytest.mark.parametrize("shape", sorted(STREAMS))
def test_a_call_needing_approval_gets_its_own_code(shape):
    _, _, make, _ = STREAMS[shape]
    out, session = exchange(POLICY, shape, [make("send_email", '{"to": "' + SECRET_ARG + '"}')])
    assert session.record.as_fields()["code"] == "tool_approval_required" and SECRET_ARG.encode() not in out
    assert b"send_email" in out  # the client declared it: the error may name it


def test_invalid_arguments_are_refused_in_a_stream():
    out, session = exchange(POLICY, "openai_chat", [openai_stream("get_weather", '{"town": "' + SECRET_ARG + '"}')])
    assert session.record.as_fields()["code"] == "tool_arguments_invalid" and SECRET_ARG.encode() not in out


def test_text_before_the_call_is_not_held_for_it():
    body = openai_stream("launch_rockets", '{"target": "x"}')
    first, rest = body.split(b"\n\n", 1)
    session = Session(POLICY)
    session.handle(sessions.request_headers())
    asyncio.run(sessions.handle(session, sessions.request_body(request_for("openai_chat"))))
    session.handle(sessions.response_headers("text/event-stream"))
    reply = session.handle(sessions.response_body(first + b"\n\n", False)).response_body.response.body_mutation
    assert not reply.HasField("body")  # released at once, unchanged
    second = session.handle(sessions.response_body(rest[:200], False)).response_body.response.body_mutation
    assert second.clear_body  # the call's first record waits


def test_detectors_still_redact_inside_an_allowed_calls_arguments():
    out, _ = exchange(POLICY, "openai_chat", [openai_stream("get_weather", '{"city": "KEY-123456"}')])
    assert b"KEY-123456" not in out and b"[KEY]" in out


def test_a_call_longer_than_the_hold_cap_ends_the_stream_even_when_fail_open():
    body = openai_stream("get_weather", '{"city": "' + "x" * 4000 + '"}')
    out, session = exchange(POLICY, "openai_chat", [body[i:i + 500] for i in range(0, len(body), 500)])
    assert session.record.as_fields()["code"] == "stream_hold_limit" and b"get_weather" not in out


def test_monitor_mode_does_not_hold_or_change_the_stream_but_records():
    body = openai_stream("launch_rockets", '{"target": "x"}')
    cut = body.index(b"launch_rockets") + 60
    out, session = exchange(MONITOR, "openai_chat", [body[:cut], body[cut:]])
    assert out == body and "would_deny" in session.verdict.would
    assert session.record.as_fields().get("code") is None and session.record.as_fields()["tool_calls"] == ["launch_rockets"]


def test_monitor_mode_releases_the_call_as_it_streams():
    body = openai_stream("launch_rockets", '{"target": "x"}')
    cut = body.index(b"launch_rockets") + 60
    session = Session(MONITOR)
    session.handle(sessions.request_headers())
    asyncio.run(sessions.handle(session, sessions.request_body(request_for("openai_chat"))))
    session.handle(sessions.response_headers("text/event-stream"))
    reply = session.handle(sessions.response_body(body[:cut], False)).response_body.response.body_mutation
    assert reply.body == body[: body.rindex(b"\n\n", 0, cut) + 2]  # every whole record, the call's included


def test_a_truncated_stream_still_checks_the_open_call():
    body = openai_stream("launch_rockets", '{"target": "' + SECRET_ARG + '"}')
    truncated = body[: body.index(b"finish_reason") - 40]
    out, session = exchange(POLICY, "openai_chat", [truncated])
    assert session.record.as_fields()["code"] == "tool_not_allowed" and b"launch_rockets" not in out


def test_the_assembler_joins_split_names_ignores_repeats_and_rechecks_changed_whole_calls():
    from extproc.model import ToolFragment
    from extproc.tool_calls import ToolCallAssembler

    calls = ToolCallAssembler()
    for fragment in (ToolFragment("k", "get_", '{"ci'), ToolFragment("k", "weather", 'ty": "Oslo"}'),
                     ToolFragment("k", "get_weather", None)):
        assert calls.add(fragment) == []
    [call] = calls.close(["k", "other"])
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo"}) and not calls.pending("k")
    assert calls.add(ToolFragment("k", "get_weather", '{"city": "Oslo"}', whole=True)) == []  # a repeat
    [changed] = calls.add(ToolFragment("k", "get_weather", '{"city": "Rome"}', whole=True))
    assert changed.arguments == {"city": "Rome"}


def test_a_responses_completed_event_that_differs_from_the_streamed_call_is_checked():
    body = responses_stream("get_weather", '{"city": "Oslo"}').replace(
        b'"output":[{"type":"function_call","id":"fc1","call_id":"c1","name":"get_weather"',
        b'"output":[{"type":"function_call","id":"fc1","call_id":"c1","name":"launch_rockets"')
    assert b"launch_rockets" in body
    out, session = exchange(TOOLS_ONLY, "openai_responses", [body])
    assert session.record.as_fields()["code"] == "tool_not_allowed" and b"launch_rockets" not in out


TOOL_JUNK = [{"choices": [{"delta": {"tool_calls": [5, {"function": 5}, {"index": "x", "function": {"name": 3}}]}}]},
             {"choices": [{"message": {"tool_calls": [{"function": {"name": ["x"], "arguments": 5}}]}}]},
             {"type": "content_block_start", "index": "x", "content_block": {"type": "tool_use", "input": 5}},
             {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": 5}},
             {"type": "response.output_item.added", "output_index": [], "item": {"type": "function_call",
                                                                                 "name": 5}},
             {"type": "response.completed", "response": {"output": [5, {"type": "function_call"}]}},
             {"message": {"tool_calls": [5, {"function": {"name": None, "arguments": [1]}}]}},
             {"tool_choice": {"type": ["x"]}}, {"tool_choice": 5}]


@pytest.mark.parametrize("shape", sorted(STREAMS))
def test_junk_tool_events_and_documents_raise_nothing(shape):
    from extproc import shapes
    from tests.unit.test_shapes_errors import JUNK_EVENTS, JUNK_RESPONSES

    target = shapes.all_shapes()[shape]
    for payload in [*JUNK_EVENTS, *JUNK_RESPONSES, *TOOL_JUNK]:
        for fragment in target.tool_fragments(payload):
            assert fragment.name is None or isinstance(fragment.name, str)
        for call in target.response_tool_calls(payload):
            assert call.name is None or isinstance(call.name, str)
        if isinstance(payload, dict):
            choice = target.tool_choice(payload)
            assert choice is None or isinstance(choice.mode, str)

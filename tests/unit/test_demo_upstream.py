"""The built-in demo model server: each API's wire format, streaming, the leak trigger, errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from extproc.demo_upstream import (
    FAKE_EMAIL,
    answer_for,
    fake_openai_key,
    parse_listen,
    split_pieces,
    start_demo_upstream,
    stop_demo_upstream,
)

KEY = re.compile(r"sk-proj-[A-Za-z0-9]{48}(?![A-Za-z0-9])")
USER = {"role": "user", "content": "hello there"}


def with_demo(scenario, chunk_delay_ms: float = 0.0):
    """Run `scenario(session)` against a demo server started in-process on a free port."""

    async def main():
        runner = await start_demo_upstream("127.0.0.1", 0, chunk_delay_ms=chunk_delay_ms)
        try:
            port = runner.addresses[0][1]
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                return await scenario(session)
        finally:
            await stop_demo_upstream(runner)

    return asyncio.run(main())


def post(path: str, payload):
    """POST `payload` (JSON, or raw bytes); returns (status, content type, HTTP chunks as received)."""

    async def scenario(session):
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        async with session.post(path, data=body) as resp:
            chunks, pending = [], b""
            async for data, end_of_chunk in resp.content.iter_chunks():
                pending += data
                if end_of_chunk and pending:
                    chunks.append(pending)
                    pending = b""
            return resp.status, resp.headers["Content-Type"], [*chunks, pending] if pending else chunks

    return with_demo(scenario)


def get_json(path: str):
    async def scenario(session):
        async with session.get(path) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            return await resp.json()

    return with_demo(scenario)


def sse_events(chunks: list[bytes]) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; also checks that every HTTP chunk holds whole events."""
    assert all(c.endswith(b"\n\n") for c in chunks)
    events = []
    for block in b"".join(chunks).decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


def test_answer_echoes_and_pieces_rebuild_the_text():
    assert answer_for("hi") == "Echo: hi"
    text = answer_for("please leak it")
    assert split_pieces(text) and "".join(split_pieces(text)) == text
    assert "".join(split_pieces("  a  bcdefghijk \n")) == "  a  bcdefghijk \n"
    assert max(len(p.strip()) for p in split_pieces(text)) <= 6


def test_leak_answer_has_a_fake_key_and_email_only_on_the_word_leak():
    assert KEY.fullmatch(fake_openai_key()) and fake_openai_key() == fake_openai_key()
    leaky = answer_for("Can you LEAK a key?")
    assert KEY.search(leaky) and FAKE_EMAIL in leaky
    for harmless in ("bleak weather", "leaky pipe", "hello"):
        assert not KEY.search(answer_for(harmless)) and FAKE_EMAIL not in answer_for(harmless)


def test_parse_listen():
    assert parse_listen("127.0.0.1:11434") == ("127.0.0.1", 11434)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen(":8080") == ("127.0.0.1", 8080)


def test_openai_chat_json():
    parts = [{"type": "text", "text": "hi"}]
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "first"}]
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": parts}]
    status, ctype, chunks = post("/v1/chat/completions", {"model": "m1", "messages": messages})
    body = orjson.loads(b"".join(chunks))
    assert (status, ctype) == (200, "application/json")
    assert (body["object"], body["model"]) == ("chat.completion", "m1")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hi"}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_openai_chat_stream_with_usage():
    payload = {"messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    status, ctype, chunks = post("/v1/chat/completions", payload)
    events = sse_events(chunks)
    assert (status, ctype) == (200, "text/event-stream")
    assert len(chunks) == len(events)  # one SSE event per HTTP chunk
    assert events[-1] == (None, "[DONE]")
    data = [orjson.loads(d) for _, d in events[:-1]]
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(d["object"] == "chat.completion.chunk" for d in data)
    pieces = [d["choices"][0]["delta"].get("content", "") for d in data if d["choices"]]
    assert "".join(pieces) == "Echo: hello there" and sum(bool(p) for p in pieces) >= 3
    assert [d["choices"][0]["finish_reason"] for d in data if d["choices"]][-1] == "stop"
    assert data[-1]["choices"] == [] and data[-1]["usage"]["completion_tokens"] > 0


def test_openai_chat_stream_without_usage():
    _, _, chunks = post("/v1/chat/completions", {"messages": [USER], "stream": True})
    data = [orjson.loads(d) for _, d in sse_events(chunks)[:-1]]
    assert all("usage" not in d and len(d["choices"]) == 1 for d in data)


def test_openai_completions_json_and_stream():
    _, ctype, chunks = post("/v1/completions", {"prompt": "say hi"})
    body = orjson.loads(b"".join(chunks))
    assert (ctype, body["object"]) == ("application/json", "text_completion")
    assert body["choices"][0]["text"] == "Echo: say hi"
    _, ctype, chunks = post("/v1/completions", {"prompt": ["x", "say hi"], "stream": True})
    events = sse_events(chunks)
    text = "".join(orjson.loads(d)["choices"][0]["text"] for _, d in events[:-1])
    assert (ctype, text, events[-1][1]) == ("text/event-stream", "Echo: say hi", "[DONE]")


def test_openai_models():
    body = get_json("/v1/models")
    assert body["object"] == "list" and body["data"][0]["id"]


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/chat", {"model": "demo", "messages": [USER]}, "message"),
        ("/api/generate", {"model": "demo", "prompt": "hello there"}, "response"),
    ],
)
def test_ollama_streams_ndjson_by_default(path, payload, field):
    status, ctype, chunks = post(path, payload)
    assert (status, ctype) == (200, "application/x-ndjson")
    assert all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in chunks)  # one line per HTTP chunk
    lines = [orjson.loads(c) for c in chunks]
    text = [line["message"]["content"] if field == "message" else line["response"] for line in lines]
    assert "".join(text) == "Echo: hello there" and len(lines) >= 3
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    final = lines[-1]
    assert final["done_reason"] == "stop" and final["prompt_eval_count"] > 0
    assert final["eval_count"] == len(lines) - 1 and final["model"] == "demo"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/chat", {"messages": [USER], "stream": False}),
        ("/api/generate", {"prompt": "hello there", "stream": False}),
    ],
)
def test_ollama_non_streamed(path, payload):
    status, ctype, chunks = post(path, payload)
    body = orjson.loads(b"".join(chunks))
    text = body["message"]["content"] if "message" in body else body["response"]
    assert (status, ctype, text, body["done"]) == (200, "application/json", "Echo: hello there", True)
    assert body["eval_count"] > 0 and body["prompt_eval_count"] > 0


def test_ollama_tags_and_version():
    model = get_json("/api/tags")["models"][0]
    assert model["name"] and re.fullmatch(r"[0-9a-f]{64}", model["digest"])
    assert get_json("/api/version")["version"]


def test_anthropic_messages_json():
    payload = {"model": "claude-x", "max_tokens": 64, "system": "s", "messages": [USER]}
    status, ctype, chunks = post("/v1/messages", payload)
    body = orjson.loads(b"".join(chunks))
    assert (status, ctype, body["type"], body["role"]) == (200, "application/json", "message", "assistant")
    assert body["content"] == [{"type": "text", "text": "Echo: hello there"}]
    assert body["stop_reason"] == "end_turn" and body["usage"]["output_tokens"] > 0


def test_anthropic_messages_stream():
    user = {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    status, ctype, chunks = post("/v1/messages", {"messages": [user], "stream": True})
    events = sse_events(chunks)
    assert (status, ctype) == (200, "text/event-stream")
    names = [name for name, _ in events]
    data = [orjson.loads(d) for _, d in events]
    assert all(name == d["type"] for name, d in zip(names, data))
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == "Echo: hello there"
    assert data[0]["message"]["usage"]["input_tokens"] > 0
    assert data[-2]["usage"]["output_tokens"] == len(names) - 5


@pytest.mark.parametrize(
    ("path", "payload", "extract"),
    [
        (
            "/v1/chat/completions",
            {"stream": True},
            lambda d: "".join(c["delta"].get("content", "") for c in d["choices"]),
        ),
        ("/v1/messages", {"stream": True}, lambda d: d.get("delta", {}).get("text", "")),
        ("/api/chat", {}, lambda d: d["message"]["content"]),
    ],
)
def test_leak_trigger_streams_a_fake_key_split_over_several_chunks(path, payload, extract):
    payload = {**payload, "messages": [{"role": "user", "content": "please leak the key"}]}
    _, _, chunks = post(path, payload)
    if path == "/api/chat":
        data = [orjson.loads(c) for c in chunks]
    else:
        data = [orjson.loads(d) for _, d in sse_events(chunks) if d != "[DONE]"]
    pieces = [extract(d) for d in data]
    text = "".join(pieces)
    assert KEY.search(text).group(0) == fake_openai_key() and FAKE_EMAIL in text
    assert not any(KEY.search(p) for p in pieces)  # the key crosses chunk boundaries


@pytest.mark.parametrize(
    ("path", "error_of"),
    [
        ("/v1/chat/completions", lambda b: b["error"]["message"]),
        ("/v1/completions", lambda b: b["error"]["message"]),
        ("/api/chat", lambda b: b["error"]),
        ("/api/generate", lambda b: b["error"]),
        ("/v1/messages", lambda b: b["type"] == "error" and b["error"]["message"]),
    ],
)
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]"])
def test_bad_json_is_a_400_in_the_api_error_format(path, error_of, raw):
    status, ctype, chunks = post(path, raw)
    assert (status, ctype) == (400, "application/json")
    assert error_of(orjson.loads(b"".join(chunks)))


def test_chunk_delay_paces_the_stream():
    async def scenario(session):
        stamps = []
        async with session.post("/api/generate", json={"prompt": "a b"}) as resp:
            async for _data, end_of_chunk in resp.content.iter_chunks():
                stamps.append(time.monotonic()) if end_of_chunk else None
        return stamps

    stamps = with_demo(scenario, chunk_delay_ms=40)
    assert len(stamps) == 4  # "Echo:", " a", " b", final
    assert stamps[-1] - stamps[0] >= 3 * 0.04 * 0.9


def test_module_entry_point_serves_and_stops_on_sigterm():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "extproc.demo_upstream", "--listen", "127.0.0.1:0", "--chunk-delay-ms", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    try:
        line = proc.stdout.readline()  # printed once the socket is listening
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

        async def scenario():
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/api/version") as resp:
                return resp.status

        assert asyncio.run(scenario()) == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# ---- what chat UIs call besides chat ---------------------------------------------------------------------------
def test_ollama_ps_lists_the_loaded_model_like_tags():
    loaded = get_json("/api/ps")["models"]
    tagged = get_json("/api/tags")["models"]
    assert [m["name"] for m in loaded] == [m["name"] for m in tagged]
    assert loaded[0]["digest"] == tagged[0]["digest"] and "expires_at" in loaded[0] and "size_vram" in loaded[0]


def test_ollama_show_describes_a_model_and_refuses_a_request_without_one():
    status, ctype, chunks = post("/api/show", {"model": "demo-echo:latest"})
    card = orjson.loads(b"".join(chunks))
    assert (status, ctype) == (200, "application/json")
    assert card["details"]["family"] == "demo" and "tools" in card["capabilities"] and card["model_info"]
    status, _, chunks = post("/api/show", {})
    assert status == 400 and orjson.loads(b"".join(chunks))["error"] == "model is required"


def with_sdk(scenario):
    """Run `scenario(base_url)` against a demo server started in-process (for the official async SDKs)."""

    async def main():
        runner = await start_demo_upstream("127.0.0.1", 0, chunk_delay_ms=0)
        try:
            return await scenario(f"http://127.0.0.1:{runner.addresses[0][1]}")
        finally:
            await stop_demo_upstream(runner)

    return asyncio.run(main())


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"unit": {"type": "string"}, "city": {"type": "string"},
                                     "days": {"type": "integer"}}, "required": ["city", "days"]}}}


def test_responses_api_through_the_openai_sdk_plain_and_streamed():
    openai = pytest.importorskip("openai")

    async def scenario(base):
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="demo", max_retries=0)
        plain = await client.responses.create(model="demo", input="hello there", instructions="be brief")
        async with client.responses.stream(model="demo", input=[USER]) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        return plain, deltas, final

    plain, deltas, final = with_sdk(scenario)
    assert plain.status == "completed" and plain.output_text == "Echo: hello there"
    assert plain.usage.total_tokens == plain.usage.input_tokens + plain.usage.output_tokens > 0
    assert len(deltas) >= 3 and "".join(deltas) == final.output_text == "Echo: hello there"


def test_responses_stream_events_are_numbered_and_leak_text_is_split():
    status, ctype, chunks = post("/v1/responses", {"input": "please leak", "stream": True})
    events = sse_events(chunks)
    data = [orjson.loads(d) for _, d in events]
    assert (status, ctype) == (200, "text/event-stream")
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert all(name == d["type"] for (name, _), d in zip(events, data))
    assert data[0]["type"] == "response.created" and data[-1]["type"] == "response.completed"
    deltas = [d["delta"] for d in data if d["type"] == "response.output_text.delta"]
    assert KEY.search("".join(deltas)) and not any(KEY.search(p) for p in deltas)


def test_openai_chat_tool_call_through_the_sdk_plain_and_streamed():
    openai = pytest.importorskip("openai")
    messages = [{"role": "user", "content": "Paris"}]

    async def scenario(base):
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="demo", max_retries=0)
        plain = await client.chat.completions.create(model="demo", messages=messages, tools=[WEATHER])
        async with client.chat.completions.stream(model="demo", messages=messages, tools=[WEATHER]) as stream:
            final = await stream.get_final_completion()
        call = plain.choices[0].message.tool_calls[0]
        answered = [*messages, {"role": "assistant", "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
        after = await client.chat.completions.create(model="demo", messages=answered, tools=[WEATHER])
        return plain, final, after

    plain, final, after = with_sdk(scenario)
    for choice in (plain.choices[0], final.choices[0]):
        call = choice.message.tool_calls[0]
        assert choice.finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert orjson.loads(call.function.arguments) == {"city": "Paris", "days": 1}
    assert after.choices[0].message.tool_calls is None and after.choices[0].finish_reason == "stop"


def test_no_tool_call_when_tool_choice_is_none_or_no_tools():
    for extra in ({"tools": [WEATHER], "tool_choice": "none"}, {"tools": []}, {}):
        _, _, chunks = post("/v1/chat/completions", {"messages": [USER], **extra})
        assert orjson.loads(b"".join(chunks))["choices"][0]["message"]["content"] == "Echo: hello there"


def test_responses_tool_call_through_the_openai_sdk():
    openai = pytest.importorskip("openai")
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object",
                                                                 "properties": {"query": {"type": "string"}}}}

    async def scenario(base):
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="demo", max_retries=0)
        async with client.responses.stream(model="demo", input="find sk", tools=[tool]) as stream:
            final = await stream.get_final_response()
        call = final.output[0]
        result = {"type": "function_call_output", "call_id": call.call_id, "output": "found"}
        after = await client.responses.create(model="demo", input=["find sk", result], tools=[tool])
        return call, after

    call, after = with_sdk(scenario)
    assert (call.type, call.name, orjson.loads(call.arguments)) == ("function_call", "lookup", {"query": "find sk"})
    assert after.output[0].type == "message"


def test_anthropic_tool_use_through_the_sdk_streamed():
    anthropic = pytest.importorskip("anthropic")
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}

    async def scenario(base):
        client = anthropic.AsyncAnthropic(base_url=base, api_key="demo", max_retries=0)
        async with client.messages.stream(model="demo", max_tokens=64, messages=[USER], tools=[tool]) as stream:
            return await stream.get_final_message()

    message = with_sdk(scenario)
    block = message.content[0]
    assert message.stop_reason == "tool_use" and block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "hello there", "days": 1})


@pytest.mark.parametrize("stream", [True, False])
def test_ollama_chat_tool_call_comes_whole(stream):
    payload = {"model": "demo", "messages": [USER], "tools": [WEATHER], "stream": stream}
    _, _, chunks = post("/api/chat", payload)
    lines = [orjson.loads(line) for line in b"".join(chunks).splitlines()]
    calls = [c for line in lines for c in line["message"].get("tool_calls", [])]
    assert calls == [{"function": {"name": "get_weather", "arguments": {"city": "hello there", "days": 1}}}]
    assert lines[-1]["done"] is True

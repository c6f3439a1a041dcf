"""The client side of the response tests: scripted upstream replies (OpenAI SSE/JSON, Anthropic SSE, Ollama
NDJSON) and what a real client makes of them after the gateway: the official `openai` and `anthropic` SDKs
(everything the application was handed, up to an error), and a line-based NDJSON reader for Ollama."""

from __future__ import annotations

import gzip
import json

import anthropic
import openai
from harness import ALLOWED_CLAUDE, ALLOWED_OLLAMA, ALLOWED_OPENAI, new_request_id

SSE, NDJSON, JSON = "text/event-stream", "application/x-ndjson", "application/json"
HELLO = [{"role": "user", "content": "hello"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def sse(events) -> list[bytes]:
    return [(e if isinstance(e, bytes) else f"data: {json.dumps(e)}\n\n".encode()) for e in events]


def chunk(delta, finish=None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": ALLOWED_OPENAI,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def completion(message) -> bytes:
    return json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": ALLOWED_OPENAI,
                       "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def openai_view(go, chunks, *, stream, content_type=JSON, status=200, gzip=False, tools=False) -> list:
    """What the openai SDK handed the application (up to an error), plus the decoded tool-call arguments."""
    stack, upstream = go
    request_id = new_request_id()
    upstream.program(request_id, chunks, status=status, headers={"content-type": content_type}, gzip=gzip)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{stack.listen_port}/v1", api_key="k", max_retries=0,
                           default_headers={"x-request-id": request_id})
    parts: list = []
    try:
        reply = client.chat.completions.create(model=ALLOWED_OPENAI, messages=HELLO, stream=stream,
                                               **({"tools": [LOOKUP]} if tools else {}))
        for part in (reply if stream else [reply]):
            parts.append(part.model_dump())
    except openai.APIError as exc:
        parts += [str(exc), getattr(exc, "body", None)]
    upstream.wait_for(request_id)
    return parts + [decoded_arguments(parts), joined_content(parts)]


def joined_content(parts) -> str:
    """The message text as the application assembles it from the deltas (or the one buffered message)."""
    choices = [c for part in parts if isinstance(part, dict) for c in part.get("choices", [])]
    return "".join((c.get("delta") or c.get("message") or {}).get("content") or "" for c in choices)


def decoded_arguments(parts) -> list:
    """Tool-call arguments as the application reads them: json.loads of the joined fragments, which must work."""
    joined: dict[int, str] = {}
    for part in parts:
        for choice in part.get("choices", []) if isinstance(part, dict) else []:
            for call in (choice.get("delta") or choice.get("message") or {}).get("tool_calls") or []:
                index = call.get("index") or 0
                joined[index] = joined.get(index, "") + ((call.get("function") or {}).get("arguments") or "")
    try:
        return [json.loads(text) for text in joined.values()]
    except ValueError as exc:
        raise AssertionError(f"tool-call arguments the client cannot parse: {list(joined.values())}") from exc


def anthropic_events(blocks) -> list[bytes]:
    start = {"type": "message_start", "message": {
        "id": "m1", "type": "message", "role": "assistant", "model": ALLOWED_CLAUDE, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}
    end = [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2}}, {"type": "message_stop"}]
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in [start, *blocks, *end]]


def anthropic_view(go, chunks) -> list:
    """Every event the anthropic stream helper yielded (up to an error) and its final message."""
    stack, upstream = go
    request_id = new_request_id()
    upstream.program(request_id, chunks, headers={"content-type": SSE})
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.listen_port}", api_key="k", max_retries=0,
                                 default_headers={"x-request-id": request_id})
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    view: list = []
    try:
        with client.messages.stream(model=ALLOWED_CLAUDE, max_tokens=16, messages=HELLO, tools=tools) as stream:
            for event in stream:
                view.append(event.model_dump())
            view.append(stream.get_final_message().model_dump())
    except anthropic.APIError as exc:
        view += [str(exc), getattr(exc, "body", None)]
    upstream.wait_for(request_id)
    return view


def text_block(pieces) -> list[dict]:
    return ([{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
            + [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
               for p in pieces] + [{"type": "content_block_stop", "index": 0}])


def tool_block(pieces) -> list[dict]:
    return ([{"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "t1", "name": "lookup", "input": {}}}]
        + [{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}}
           for p in pieces] + [{"type": "content_block_stop", "index": 0}])


def ollama_line(content, done=False, field="content") -> dict:
    message = {"role": "assistant", "content": ""}
    message[field] = content
    return {"model": ALLOWED_OLLAMA, "created_at": "2025-01-01T00:00:00Z", "message": message, "done": done}


def ollama_view(go, lines, content_type=NDJSON, gzip_body=False) -> list:
    """Every JSON line a line-based NDJSON reader gets from /api/chat, and the joined content and thinking."""
    stack, upstream = go
    request_id = new_request_id()
    raw = [(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode()) for line in lines]
    upstream.program(request_id, raw, headers={"content-type": content_type}, gzip=gzip_body)
    reply, _ = stack.stream("/api/chat", {"model": ALLOWED_OLLAMA, "messages": HELLO, "stream": True},
                            {"x-request-id": request_id})
    upstream.wait_for(request_id)
    body = gzip.decompress(reply.body) if reply.headers.get("content-encoding") == "gzip" else reply.body
    lines = [json.loads(line) for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    messages = [line.get("message") or {} for line in lines if isinstance(line, dict)]
    return lines + ["".join(m.get(field) or "" for m in messages) for field in ("content", "thinking")]

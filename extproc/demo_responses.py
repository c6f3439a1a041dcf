"""The demo model server's OpenAI Responses API (`POST /v1/responses`): a response object, or its SSE stream of
typed events (`response.created` ... `response.output_text.delta` ... `response.completed`), each with its
`sequence_number`; a `function_call` output item when the request offers tools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from extproc import demo_tools
from extproc.demo_tools import DemoCall
from extproc.demo_wire import (
    SSE,
    Reply,
    json_reply,
    last_user_text,
    make_reply,
    read_json,
    split_pieces,
    sse,
    stream,
)


def user_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    return value if isinstance(value, str) else last_user_text(value)


def _usage(r: Reply) -> dict[str, Any]:
    return {"input_tokens": r.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": r.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": r.prompt_tokens + r.completion_tokens}


def message_item(r: Reply, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": f"msg_{r.ident}", "status": status, "role": "assistant", "content": content}


def call_item(call: DemoCall, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{call.id[5:]}", "call_id": call.id, "name": call.name,
            "arguments": arguments, "status": status}


def response_object(r: Reply, body: dict[str, Any], output: list[dict[str, Any]], status: str) -> dict[str, Any]:
    done = status == "completed"
    return {"id": f"resp_{r.ident}", "object": "response", "created_at": r.created, "status": status,
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "model": r.model, "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": body.get("tools") or [], "usage": _usage(r) if done else None}


class _Events:
    """SSE events numbered in order, as the API numbers them."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        frame = sse({"type": kind, "sequence_number": self.number, **fields}, kind)
        self.number += 1
        return frame


def _text_events(event: _Events, r: Reply) -> Iterator[bytes]:
    item_id, where = f"msg_{r.ident}", {"output_index": 0, "content_index": 0}
    yield event("response.output_item.added", output_index=0, item=message_item(r, "", "in_progress"))
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", item_id=item_id, **where, part=part)
    for piece in r.pieces:
        yield event("response.output_text.delta", item_id=item_id, **where, delta=piece, logprobs=[])
    yield event("response.output_text.done", item_id=item_id, **where, text=r.text, logprobs=[])
    yield event("response.content_part.done", item_id=item_id, **where, part={**part, "text": r.text})
    yield event("response.output_item.done", output_index=0, item=message_item(r, r.text))


def _call_events(event: _Events, call: DemoCall) -> Iterator[bytes]:
    item_id, arguments = f"fc_{call.id[5:]}", call.arguments_json
    yield event("response.output_item.added", output_index=0, item=call_item(call, "", "in_progress"))
    for piece in split_pieces(arguments):
        yield event("response.function_call_arguments.delta", item_id=item_id, output_index=0, delta=piece)
    yield event("response.function_call_arguments.done", item_id=item_id, output_index=0, arguments=arguments)
    yield event("response.output_item.done", output_index=0, item=call_item(call, arguments))


def frames(r: Reply, body: dict[str, Any], call: DemoCall | None) -> Iterator[bytes]:
    event = _Events()
    yield event("response.created", response=response_object(r, body, [], "in_progress"))
    yield event("response.in_progress", response=response_object(r, body, [], "in_progress"))
    yield from _call_events(event, call) if call else _text_events(event, r)
    output = [call_item(call, call.arguments_json)] if call else [message_item(r, r.text)]
    yield event("response.completed", response=response_object(r, body, output, "completed"))


async def responses(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, "openai")
    user = user_text(body)
    r = make_reply(body, user)
    call = demo_tools.requested_call(body, "responses", user)
    if body.get("stream"):
        return await stream(request, SSE, frames(r, body, call))
    output = [call_item(call, call.arguments_json)] if call else [message_item(r, r.text)]
    return json_reply(response_object(r, body, output, "completed"))

"""A differential-test upstream that reads requests the way vLLM does: FastAPI + pydantic models with
`extra="allow"` (vLLM's OpenAIBaseModel), content as a string or a list of parts. It appends what it decoded
(`model_dump()`) as one JSON line per request to the log and answers the reply scripted for the request's
x-request-id (same control API as the Go upstream). Run: `python fastapi_upstream.py --log FILE`; it prints
`LISTENING <port>` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import socket
import sys
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict


class Base(BaseModel):
    model_config = ConfigDict(extra="allow")


class Function(Base):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ChatTool(Base):
    type: str = "function"
    function: Function


class ToolCallFunction(Base):
    name: str
    arguments: str


class ToolCall(Base):
    id: str | None = None
    type: str = "function"
    function: ToolCallFunction


class ChatMessage(Base):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(Base):
    messages: list[ChatMessage]
    model: str | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool | None = False
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None


class AnthropicMessage(Base):
    role: str
    content: str | list[dict[str, Any]]


class AnthropicTool(Base):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class MessagesRequest(Base):
    model: str
    max_tokens: int
    messages: list[AnthropicMessage]
    system: str | list[dict[str, Any]] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None
    stream: bool | None = False


class ResponsesRequest(Base):
    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    stream: bool | None = False


REPLIES: dict[str, dict] = {}
LOCK = threading.Lock()
app = FastAPI()
LOG_PATH = ""


def record(request: Request, route: str, decoded: Any, error: str | None = None) -> None:
    entry = {"request_id": request.headers.get("x-request-id", ""), "method": request.method,
             "raw_path": request.url.path, "route": route, "query": request.url.query, "decoded": decoded,
             "extra_text": []}
    if error is not None:
        entry["decode_error"] = error
    line = json.dumps(entry, default=str)
    with LOCK, open(LOG_PATH, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


async def answer(request: Request) -> Response:
    with LOCK:
        reply = REPLIES.pop(request.headers.get("x-request-id", ""), None)
    if reply is None:
        return Response(b'{"ok":true}', media_type="application/json")
    chunks = [base64.b64decode(c) for c in reply.get("chunks", [])]
    headers = dict(reply.get("headers", {}))
    if reply.get("gzip"):
        chunks, headers["content-encoding"] = [gzip.compress(b"".join(chunks))], "gzip"
    delay = reply.get("chunk_delay_ms", 0) / 1000

    async def body():
        for index, chunk in enumerate(chunks):
            if index and delay:
                await asyncio.sleep(delay)
            yield chunk
    return StreamingResponse(body(), status_code=reply.get("status", 200), headers=headers)


@app.exception_handler(RequestValidationError)
async def rejected(request: Request, exc: RequestValidationError) -> Response:
    """Logged too (nothing decoded), so a test can tell "the server refused it" from "it never arrived"."""
    record(request, "rejected", None, error=f"{len(exc.errors())} validation error(s)")
    return Response(b'{"detail":"invalid request"}', status_code=422, media_type="application/json")


@app.post("/__control/reply")
async def control(request: Request) -> Response:
    data = await request.json()
    with LOCK:
        REPLIES[data["request_id"]] = data["reply"]
    return Response(status_code=204)


@app.post("/v1/chat/completions")
async def chat(body: ChatCompletionRequest, request: Request) -> Response:
    record(request, "openai_chat", body.model_dump())
    return await answer(request)


@app.post("/v1/messages")
async def messages(body: MessagesRequest, request: Request) -> Response:
    record(request, "anthropic_messages", body.model_dump())
    return await answer(request)


@app.post("/v1/responses")
async def responses(body: ResponsesRequest, request: Request) -> Response:
    record(request, "openai_responses", body.model_dump())
    return await answer(request)


def main() -> None:
    global LOG_PATH
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    LOG_PATH = parser.parse_args().log
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    sys.stdout.flush()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

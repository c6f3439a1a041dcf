"""What every API of the demo model server shares: the deterministic answer, its stream pieces, JSON bodies in
and out, and paced streaming (one frame per HTTP chunk)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

DEFAULT_MODEL = "demo-echo"
FAKE_EMAIL = "jane.doe@example.com"
SSE = "text/event-stream"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LEAK_WORD = re.compile(r"\bleak\b", re.IGNORECASE)
_PIECE = re.compile(r"\s*\S{1,6}|\s+")
DELAY = web.AppKey("chunk_delay", float)


def fake_openai_key(seed: str = "extproc-demo-upstream") -> str:
    """A fake key shaped like an OpenAI project key: `sk-proj-` + 48 alphanumerics, same every time."""
    raw = hashlib.sha512(seed.encode()).digest()
    return "sk-proj-" + "".join(_KEY_ALPHABET[b % len(_KEY_ALPHABET)] for b in raw[:48])


def answer_for(user_text: str) -> str:
    if not _LEAK_WORD.search(user_text):
        return f"Echo: {user_text}"
    return f"Echo: {user_text}\nHere is the (fake) key: {fake_openai_key()} and its owner is {FAKE_EMAIL}."


def split_pieces(text: str) -> list[str]:
    """Small stream pieces (a word or up to 6 characters each); joined they give back `text`."""
    return _PIECE.findall(text)


def content_text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts/blocks with a `text` field."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def prompt_text(prompt: Any) -> str:
    prompt = prompt[-1] if isinstance(prompt, list) and prompt else prompt
    return prompt if isinstance(prompt, str) else ""


@dataclass(frozen=True, slots=True)
class Reply:
    model: str
    text: str
    pieces: list[str]
    prompt_tokens: int
    completion_tokens: int
    ident: str
    created: int


def make_reply(body: dict[str, Any], user_text: str, default_model: str = DEFAULT_MODEL) -> Reply:
    text = answer_for(user_text)
    pieces = split_pieces(text)
    asked = body.get("model")
    model = asked if isinstance(asked, str) else default_model
    ident = hashlib.sha256(text.encode()).hexdigest()[:24]
    usage = (max(1, len(user_text.split())), len(pieces))
    return Reply(model, text, pieces, *usage, ident, int(time.time()))


def json_reply(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def bad_request(api: str, message: str) -> web.HTTPBadRequest:
    """A 400 whose body is in the API's own error format."""
    detail = {"type": "invalid_request_error", "message": message}
    bodies = {"ollama": {"error": message}, "anthropic": {"type": "error", "error": detail}}
    body = bodies.get(api, {"error": {**detail, "param": None, "code": None}})
    error = web.HTTPBadRequest(text=orjson.dumps(body).decode(), content_type="application/json")
    error.headers["Content-Type"] = "application/json"  # as the real APIs send it: no charset parameter
    return error


async def read_json(request: web.Request, api: str) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise bad_request(api, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(api, "request body must be a JSON object")
    return body


async def stream(request: web.Request, content_type: str, frames: Iterable[bytes]) -> web.StreamResponse:
    """Write each frame as its own HTTP chunk, pausing the configured delay between frames."""
    delay = request.app[DELAY]  # the writer hands every write straight to the socket (TCP_NODELAY)
    response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for index, frame in enumerate(frames):
            if index and delay > 0:
                await asyncio.sleep(delay)
            await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:  # the client went away mid-stream: nothing left to do
        pass
    return response


def sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"

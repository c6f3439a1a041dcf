"""A tiny deterministic model server (OpenAI, Ollama, Anthropic APIs) for the local demo stack.

It answers `Echo: <last user message>`; if that message has the word "leak", the answer adds a FAKE
OpenAI-shaped key and a fake e-mail so redaction has something to catch. `python -m extproc.demo_upstream`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import re
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from aiohttp import web

DEFAULT_MODEL = "demo-echo"
FAKE_EMAIL = "jane.doe@example.com"
SSE = "text/event-stream"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LEAK_WORD = re.compile(r"\bleak\b", re.IGNORECASE)
_PIECE = re.compile(r"\s*\S{1,6}|\s+")
_DELAY = web.AppKey("chunk_delay", float)


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
    model = body.get("model") if isinstance(body.get("model"), str) else default_model
    ident = hashlib.sha256(text.encode()).hexdigest()[:24]
    usage = (max(1, len(user_text.split())), len(pieces))
    return Reply(model, text, pieces, *usage, ident, int(time.time()))


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def _bad_request(api: str, message: str) -> web.HTTPBadRequest:
    """A 400 whose body is in the API's own error format."""
    detail = {"type": "invalid_request_error", "message": message}
    bodies = {"ollama": {"error": message}, "anthropic": {"type": "error", "error": detail}}
    body = bodies.get(api, {"error": {**detail, "param": None, "code": None}})
    error = web.HTTPBadRequest(text=orjson.dumps(body).decode(), content_type="application/json")
    error.headers["Content-Type"] = "application/json"  # as the real APIs send it: no charset parameter
    return error


async def _read_json(request: web.Request, api: str) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _bad_request(api, f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request(api, "request body must be a JSON object")
    return body


async def _stream(request: web.Request, content_type: str, frames: Iterable[bytes]) -> web.StreamResponse:
    """Write each frame as its own HTTP chunk, pausing the configured delay between frames."""
    delay = request.app[_DELAY]  # the writer hands every write straight to the socket (TCP_NODELAY)
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


def _openai_usage(r: Reply) -> dict[str, int]:
    total = r.prompt_tokens + r.completion_tokens
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "total_tokens": total}


def _openai_frames(r: Reply, base: dict[str, Any], chat: bool, include_usage: bool) -> Iterator[bytes]:
    extra = {"usage": None} if include_usage else {}

    def chunk(piece: Any, finish: str | None = None) -> bytes:
        choice = {"index": 0, ("delta" if chat else "text"): piece, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice], **extra})

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    for piece in r.pieces:
        yield chunk({"content": piece} if chat else piece)
    yield chunk({} if chat else "", "stop")
    if include_usage:
        yield sse({**base, "choices": [], "usage": _openai_usage(r)})
    yield b"data: [DONE]\n\n"


async def _openai(request: web.Request, chat: bool) -> web.StreamResponse:
    body = await _read_json(request, "openai")
    user = last_user_text(body.get("messages")) if chat else prompt_text(body.get("prompt"))
    r = make_reply(body, user)
    prefix, kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    base = {"id": f"{prefix}-{r.ident}", "created": r.created, "model": r.model}
    if body.get("stream"):
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base["object"] = f"{kind}.chunk" if chat else kind
        return await _stream(request, SSE, _openai_frames(r, base, chat, include_usage))
    message = {"message": {"role": "assistant", "content": r.text}} if chat else {"text": r.text}
    choice = {"index": 0, **message, "logprobs": None, "finish_reason": "stop"}
    return _json({**base, "object": kind, "choices": [choice], "usage": _openai_usage(r)})


async def openai_models(request: web.Request) -> web.Response:
    model = {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "extproc-demo"}
    return _json({"object": "list", "data": [model]})


def _ollama_line(r: Reply, chat: bool, text: str, done: bool) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
    obj: dict[str, Any] = {"model": r.model, "created_at": now, **out, "done": done}
    if done:  # made-up durations (ns); the token counts are the reply's
        obj.update(done_reason="stop", total_duration=3 * 10**6, load_duration=0, prompt_eval_duration=10**6)
        obj.update(prompt_eval_count=r.prompt_tokens, eval_count=r.completion_tokens, eval_duration=2 * 10**6)
    return orjson.dumps(obj) + b"\n"


async def _ollama(request: web.Request, chat: bool) -> web.StreamResponse:
    body = await _read_json(request, "ollama")
    user = last_user_text(body.get("messages")) if chat else prompt_text(body.get("prompt"))
    r = make_reply(body, user, default_model=f"{DEFAULT_MODEL}:latest")
    if body.get("stream", True) is False:
        return web.Response(body=_ollama_line(r, chat, r.text, True), content_type="application/json")
    frames = [_ollama_line(r, chat, piece, False) for piece in r.pieces]
    return await _stream(request, "application/x-ndjson", [*frames, _ollama_line(r, chat, "", True)])


async def ollama_tags(request: web.Request) -> web.Response:
    name = f"{DEFAULT_MODEL}:latest"
    details = {"format": "gguf", "family": "demo", "parameter_size": "0B", "quantization_level": "none"}
    digest = hashlib.sha256(name.encode()).hexdigest()
    model = {"name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z", "size": 0, "digest": digest}
    return _json({"models": [{**model, "details": details}]})


async def ollama_version(request: web.Request) -> web.Response:
    return _json({"version": "0.0.0-demo"})


def _event(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields}, kind)


def _anthropic_frames(r: Reply, message: dict[str, Any]) -> Iterator[bytes]:
    usage = {**message["usage"], "output_tokens": 0}
    yield _event("message_start", message={**message, "content": [], "stop_reason": None, "usage": usage})
    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    for piece in r.pieces:
        yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    yield _event("content_block_stop", index=0)
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    yield _event("message_delta", delta=stop, usage={"output_tokens": r.completion_tokens})
    yield _event("message_stop")


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request, "anthropic")
    r = make_reply(body, last_user_text(body.get("messages")))
    message = {"id": f"msg_{r.ident}", "type": "message", "role": "assistant", "model": r.model}
    message.update(content=[{"type": "text", "text": r.text}], stop_reason="end_turn", stop_sequence=None)
    message["usage"] = {"input_tokens": r.prompt_tokens, "output_tokens": r.completion_tokens}
    if body.get("stream"):
        return await _stream(request, SSE, _anthropic_frames(r, message))
    return _json(message)


def make_app(chunk_delay_ms: float = 20.0) -> web.Application:
    app = web.Application()
    app[_DELAY] = max(0.0, chunk_delay_ms) / 1000.0
    app.router.add_post("/v1/chat/completions", partial(_openai, chat=True))
    app.router.add_post("/v1/completions", partial(_openai, chat=False))
    app.router.add_get("/v1/models", openai_models)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/api/chat", partial(_ollama, chat=True))
    app.router.add_post("/api/generate", partial(_ollama, chat=False))
    app.router.add_get("/api/tags", ollama_tags)
    app.router.add_get("/api/version", ollama_version)
    return app


async def start_demo_upstream(host: str, port: int, *, chunk_delay_ms: float = 20.0) -> web.AppRunner:
    """Start serving on host:port (0 picks a free port: see `runner.addresses`); returns the runner."""
    runner = web.AppRunner(make_app(chunk_delay_ms), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def stop_demo_upstream(runner: web.AppRunner) -> None:
    await runner.cleanup()


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _serve(host: str, port: int, chunk_delay_ms: float) -> None:
    runner = await start_demo_upstream(host, port, chunk_delay_ms=chunk_delay_ms)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    bound = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
    print(f"demo upstream listening on {bound} (OpenAI, Ollama and Anthropic APIs)", flush=True)
    try:
        await stop.wait()
    finally:
        await stop_demo_upstream(runner)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extproc.demo_upstream", description=__doc__)
    parser.add_argument("--listen", type=parse_listen, default="127.0.0.1:11434", help="HOST:PORT")
    parser.add_argument("--chunk-delay-ms", type=float, default=20.0, help="pause between streamed pieces")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(*args.listen, args.chunk_delay_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

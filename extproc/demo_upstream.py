"""A tiny deterministic model server (OpenAI chat/completions/responses, Ollama, Anthropic) for the local demo
stack, answering what chat UIs call (model lists, /api/ps, /api/show, tool calls when tools are offered).

It answers `Echo: <last user message>`; if that message has the word "leak", the answer adds a FAKE
OpenAI-shaped key and a fake e-mail so redaction has something to catch. `python -m extproc.demo_upstream`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from extproc import demo_ollama, demo_responses, demo_tools
from extproc.demo_wire import (  # noqa: F401 (FAKE_EMAIL, answer_for, fake_openai_key: the demo's public API)
    DEFAULT_MODEL,
    DELAY,
    FAKE_EMAIL,
    SSE,
    Reply,
    answer_for,
    fake_openai_key,
    json_reply,
    last_user_text,
    make_reply,
    prompt_text,
    read_json,
    split_pieces,
    sse,
    stream,
)


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
    body = await read_json(request, "openai")
    user = last_user_text(body.get("messages")) if chat else prompt_text(body.get("prompt"))
    r = make_reply(body, user)
    call = demo_tools.requested_call(body, "openai", user) if chat else None
    prefix, kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    base = {"id": f"{prefix}-{r.ident}", "created": r.created, "model": r.model}
    if body.get("stream"):
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base["object"] = f"{kind}.chunk" if chat else kind
        frames = demo_tools.openai_frames(call, base) if call else _openai_frames(r, base, chat, include_usage)
        return await stream(request, SSE, frames)
    message = {"message": {"role": "assistant", "content": r.text}} if chat else {"text": r.text}
    if call:
        message = {"message": demo_tools.openai_message(call)}
    choice = {"index": 0, **message, "logprobs": None, "finish_reason": "tool_calls" if call else "stop"}
    return json_reply({**base, "object": kind, "choices": [choice], "usage": _openai_usage(r)})


async def openai_models(request: web.Request) -> web.Response:
    model = {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "extproc-demo"}
    return json_reply({"object": "list", "data": [model]})


def _ollama_line(r: Reply, chat: bool, text: str, done: bool, message: dict[str, Any] | None = None) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = {"message": message or {"role": "assistant", "content": text}} if chat else {"response": text}
    obj: dict[str, Any] = {"model": r.model, "created_at": now, **out, "done": done}
    if done:  # made-up durations (ns); the token counts are the reply's
        obj.update(done_reason="stop", total_duration=3 * 10**6, load_duration=0, prompt_eval_duration=10**6)
        obj.update(prompt_eval_count=r.prompt_tokens, eval_count=r.completion_tokens, eval_duration=2 * 10**6)
    return orjson.dumps(obj) + b"\n"


async def _ollama(request: web.Request, chat: bool) -> web.StreamResponse:
    body = await read_json(request, "ollama")
    user = last_user_text(body.get("messages")) if chat else prompt_text(body.get("prompt"))
    r = make_reply(body, user, default_model=f"{DEFAULT_MODEL}:latest")
    call = demo_tools.requested_call(body, "ollama", user) if chat else None
    message = demo_tools.ollama_message(call) if call else None  # Ollama sends a call whole, in one line
    if body.get("stream", True) is False:
        return web.Response(body=_ollama_line(r, chat, r.text, True, message), content_type="application/json")
    frames = [_ollama_line(r, chat, "", False, message)] if message else [
        _ollama_line(r, chat, piece, False) for piece in r.pieces]
    return await stream(request, "application/x-ndjson", [*frames, _ollama_line(r, chat, "", True)])


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
    body = await read_json(request, "anthropic")
    user = last_user_text(body.get("messages"))
    r = make_reply(body, user)
    call = demo_tools.requested_call(body, "anthropic", user)
    message: dict[str, Any] = {"id": f"msg_{r.ident}", "type": "message", "role": "assistant", "model": r.model}
    content = demo_tools.anthropic_block(call) if call else {"type": "text", "text": r.text}
    message.update(content=[content], stop_reason="tool_use" if call else "end_turn", stop_sequence=None)
    message["usage"] = {"input_tokens": r.prompt_tokens, "output_tokens": r.completion_tokens}
    if body.get("stream"):
        frames = demo_tools.anthropic_frames(call, r, message) if call else _anthropic_frames(r, message)
        return await stream(request, SSE, frames)
    return json_reply(message)


def make_app(chunk_delay_ms: float = 20.0) -> web.Application:
    app = web.Application()
    app[DELAY] = max(0.0, chunk_delay_ms) / 1000.0
    app.router.add_post("/v1/chat/completions", partial(_openai, chat=True))
    app.router.add_post("/v1/completions", partial(_openai, chat=False))
    app.router.add_get("/v1/models", openai_models)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/api/chat", partial(_ollama, chat=True))
    app.router.add_post("/api/generate", partial(_ollama, chat=False))
    demo_ollama.add_routes(app)
    app.router.add_post("/v1/responses", demo_responses.responses)
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
        host, port = args.listen
        asyncio.run(_serve(host, port, args.chunk_delay_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

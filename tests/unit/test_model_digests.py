"""The digest lookup behind the `models` check's pins: parsing `/api/tags`, the per-instance cache, refresh,
timeout and one shared in-flight lookup, against a tiny local aiohttp server."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import orjson
import pytest
import structlog
from aiohttp import web

from extproc import metrics
from extproc.model_digests import (
    DigestCache,
    DigestSourceError,
    normalize_digest,
    ollama_name,
    parse_tags,
    split_tag,
)

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def tags(*entries: tuple[str, str]) -> dict:
    return {"models": [{"name": name, "model": name, "digest": digest, "size": 1} for name, digest in entries]}


class TagsServer:
    """Serves `self.doc` at /api/tags; counts hits; `gate` (when set) holds every answer until it opens."""

    def __init__(self) -> None:
        self.doc: object = tags(("llama3.2:3b", DIGEST_A))
        self.status = 200
        self.hits = 0
        self.gate: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.gate is not None:
            await self.gate.wait()
        return web.Response(status=self.status, body=orjson.dumps(self.doc), content_type="application/json")


@asynccontextmanager
async def serving(server: TagsServer):
    app = web.Application()
    app.router.add_get("/api/tags", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if server.gate is not None:
            server.gate.set()
        await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_digests_are_compared_without_prefix_and_case():
    assert normalize_digest("sha256:" + "AB" * 32) == "ab" * 32
    assert normalize_digest(" " + DIGEST_A) == DIGEST_A


@pytest.mark.parametrize(("name", "split", "resolved"), [
    ("llama3.2:3b", ("llama3.2", "3b"), "llama3.2:3b"),
    ("llama3.2", ("llama3.2", None), "llama3.2:latest"),
    ("registry.local:5000/team/model", ("registry.local:5000/team/model", None),
     "registry.local:5000/team/model:latest"),
    ("registry.local:5000/team/model:v1", ("registry.local:5000/team/model", "v1"),
     "registry.local:5000/team/model:v1"),
])
def test_names_split_into_base_and_tag_and_untagged_means_latest(name, split, resolved):
    assert split_tag(name) == split
    assert ollama_name(name) == resolved


def test_a_tags_table_keys_both_names_and_skips_entries_without_digest():
    doc = {"models": [{"name": "qwen", "model": "qwen:7b", "digest": "sha256:" + DIGEST_B},
                      {"name": "broken"}, "not an object"]}
    assert parse_tags(doc) == {"qwen:latest": DIGEST_B, "qwen:7b": DIGEST_B}
    with pytest.raises(DigestSourceError):
        parse_tags({"error": "nope"})


def test_a_table_is_reused_until_the_refresh_interval_then_fetched_again():
    server, clock = TagsServer(), Clock()

    async def go():
        async with serving(server) as url:
            cache = DigestCache(url, timeout=2, refresh=30, clock=clock)
            assert await cache.digest_of("llama3.2:3b") == DIGEST_A
            server.doc = tags(("llama3.2:3b", DIGEST_B))
            clock.now += 29
            assert await cache.digest_of("llama3.2:3b") == DIGEST_A  # cached
            clock.now += 2
            assert await cache.digest_of("llama3.2:3b") == DIGEST_B  # refreshed
            assert await cache.digest_of("mistral") is None
        return cache.lookups

    assert asyncio.run(go()) == 2
    assert server.hits == 2


def test_concurrent_requests_share_one_lookup():
    server = TagsServer()

    async def go():
        server.gate = asyncio.Event()
        async with serving(server) as url:
            cache = DigestCache(url, timeout=5, refresh=60)
            waiters = [asyncio.create_task(cache.digest_of("llama3.2:3b")) for _ in range(8)]
            while server.hits == 0:
                await asyncio.sleep(0)  # yield until the one lookup reached the server
            server.gate.set()
            return await asyncio.gather(*waiters), cache.lookups

    results, lookups = asyncio.run(go())
    assert results == [DIGEST_A] * 8
    assert lookups == 1 and server.hits == 1


def test_a_waiter_that_leaves_does_not_cancel_the_shared_lookup():
    server = TagsServer()

    async def go():
        server.gate = asyncio.Event()
        async with serving(server) as url:
            cache = DigestCache(url, timeout=5, refresh=60)
            first = asyncio.create_task(cache.digest_of("llama3.2:3b"))
            second = asyncio.create_task(cache.digest_of("llama3.2:3b"))
            while server.hits == 0:
                await asyncio.sleep(0)
            first.cancel()
            server.gate.set()
            return await second, first.cancelled()

    assert asyncio.run(go()) == (DIGEST_A, True)


def failures() -> float:
    return metrics.ERRORS.labels(kind="model_digest_source")._value.get()


def test_a_slow_source_fails_after_the_timeout_is_counted_and_is_not_cached():
    server = TagsServer()

    async def go():
        server.gate = asyncio.Event()
        async with serving(server) as url:
            cache = DigestCache(url, timeout=0.2, refresh=60)
            with pytest.raises(DigestSourceError, match="TimeoutError"):
                await cache.table()
            server.gate.set()
            return await cache.digest_of("llama3.2:3b"), cache.lookups

    before = failures()
    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(go()) == (DIGEST_A, 2)
    assert failures() == before + 1
    [event] = [e for e in logs if e["event"] == "model_digests_unavailable"]
    assert event["error_type"] == "TimeoutError" and event["log_level"] == "warning"


@pytest.mark.parametrize(("status", "doc", "reason"), [
    (500, {"error": "boom"}, "HTTP 500"),
    (200, ["not", "a", "table"], "no `models` list"),
])
def test_a_source_that_answers_badly_is_an_error(status, doc, reason):
    server = TagsServer()
    server.status, server.doc = status, doc

    async def go():
        async with serving(server) as url:
            await DigestCache(url, timeout=2, refresh=60).table()

    with pytest.raises(DigestSourceError, match=reason), structlog.testing.capture_logs():
        asyncio.run(go())


def test_an_unreachable_source_is_an_error():
    async def go():
        async with serving(TagsServer()) as url:
            pass  # the server is stopped again: its port refuses connections
        await DigestCache(url, timeout=2, refresh=60).table()

    with pytest.raises(DigestSourceError, match="ClientConnectorError"), structlog.testing.capture_logs():
        asyncio.run(go())

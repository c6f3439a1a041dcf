"""Which digest each model has on an Ollama server, read from its `GET /api/tags`, for the `models` check's pins.

`/api/tags` lists the pulled models: `{"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b",
"digest": "<64 hex>", ...}]}`. Digests are compared without their `sha256:` prefix (some servers add it) and in
lower case. Ollama reads a name without a tag as `:latest`, so names are keyed that way.

A `DigestCache` belongs to one check instance: the table is fetched on first use, reused for `refresh` seconds,
and then fetched again by the next request that needs it. Concurrent requests share one lookup; every lookup is
bounded by `timeout`. A failed lookup raises `DigestSourceError` (the check's rule then applies its `on_error`),
is counted in `extproc_errors_total{kind="model_digest_source"}`, and is not cached: the next request tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from extproc import logs, metrics

MAX_TAGS_BYTES = 4 * 1024 * 1024
_log = logs.get("extproc.model_digests")


class DigestSourceError(Exception):
    """The digest source could not be read or answered something that is not a tags list."""


def normalize_digest(value: str) -> str:
    value = value.strip().lower()
    return value.removeprefix("sha256:")


def split_tag(name: str) -> tuple[str, str | None]:
    """`llama3.2:3b` -> (`llama3.2`, `3b`); a colon inside a registry host (`host:5000/ns/m`) is no tag."""
    base, sep, tag = name.rpartition(":")
    if not sep or not base or "/" in tag:
        return name, None
    return base, tag


def ollama_name(name: str) -> str:
    """The name Ollama resolves `name` to: an untagged name means `:latest`."""
    return name if split_tag(name)[1] is not None else f"{name}:latest"


def parse_tags(doc: Any) -> dict[str, str]:
    """{Ollama name: digest without prefix} of a `/api/tags` document."""
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        raise DigestSourceError("the digest source's answer has no `models` list")
    table: dict[str, str] = {}
    for entry in models:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        for key in ("name", "model"):
            if isinstance(entry.get(key), str):
                table[ollama_name(entry[key])] = normalize_digest(entry["digest"])
    return table


async def fetch_tags(base_url: str, timeout: float) -> dict[str, str]:
    """Read `base_url/api/tags`, the whole exchange bounded by `timeout` seconds."""
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as session, \
            session.get(base_url.rstrip("/") + "/api/tags") as reply:
        if reply.status != 200:
            raise DigestSourceError(f"the digest source answered HTTP {reply.status}")
        body = await reply.content.read(MAX_TAGS_BYTES + 1)
    if len(body) > MAX_TAGS_BYTES:
        raise DigestSourceError(f"the digest source's answer is larger than {MAX_TAGS_BYTES} bytes")
    try:
        return parse_tags(orjson.loads(body))
    except orjson.JSONDecodeError:
        raise DigestSourceError("the digest source's answer is not JSON") from None


class DigestCache:
    def __init__(self, base_url: str, timeout: float, refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.refresh = refresh
        self.clock = clock
        self.lookups = 0  # lookups started (tests and operators can see the cache working)
        self._table: dict[str, str] | None = None
        self._fetched_at = 0.0
        self._inflight: asyncio.Task[dict[str, str]] | None = None

    async def table(self) -> dict[str, str]:
        if self._table is not None and self.clock() - self._fetched_at < self.refresh:
            return self._table
        loop = asyncio.get_running_loop()
        task = self._inflight
        # A task from another event loop (policy tests run each case in a fresh loop) cannot be awaited here.
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._inflight = loop.create_task(self._lookup())
            task.add_done_callback(_consume_exception)
        # One waiter giving up (its client left) must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    async def digest_of(self, name: str) -> str | None:
        return (await self.table()).get(ollama_name(name))

    async def _lookup(self) -> dict[str, str]:
        self.lookups += 1
        try:
            table = await fetch_tags(self.base_url, self.timeout)
        except (DigestSourceError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            metrics.ERRORS.labels(kind="model_digest_source").inc()
            _log.warning("model_digests_unavailable", source=self.base_url, error_type=type(exc).__name__)
            if isinstance(exc, DigestSourceError):
                raise
            raise DigestSourceError(f"model digest source unavailable ({type(exc).__name__})") from None
        self._table, self._fetched_at = table, self.clock()
        return table


def _consume_exception(task: asyncio.Task[Any]) -> None:
    """Mark a failed lookup's exception as seen even when every waiter left before it ended."""
    if not task.cancelled():
        task.exception()

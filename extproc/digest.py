"""Keyed digests of matched values, so the same leaked value can be correlated across audit records (and
across pods sharing a key) without being stored.

The key comes from a file (`serve --digest-key-file`, else EXTPROC_HMAC_KEY_FILE), else EXTPROC_HMAC_KEY,
else a random per-process key; while a configured file is missing, the env or random key is used. The
server polls the file's content like the policy reloader and swaps in a changed key without a restart (a
Kubernetes Secret update swaps a symlink, so the path is re-read, not watched). Each exchange binds the key
current at its start (a context variable set in the gRPC handler's task, inherited by its background work),
so redaction tags and the audit record of one exchange always use one key. The key is never logged:
rotations are logged with a generation number.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from contextvars import ContextVar

from extproc import logs, metrics

ENV_FILE = "EXTPROC_HMAC_KEY_FILE"
ENV_KEY = "EXTPROC_HMAC_KEY"
_log = logs.get("extproc.digest")
_exchange_key: ContextVar[bytes | None] = ContextVar("digest_key", default=None)


class DigestKeyError(Exception):
    """The key file cannot be used (missing, unreadable, empty)."""


class DigestKey:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get(ENV_FILE) or None
        self.generation = 1
        self._unreadable = False
        env = os.environ.get(ENV_KEY)
        self.source, self.current = ("env", env.encode()) if env else ("random", secrets.token_bytes(32))
        if self.path:
            try:
                self.source, self.current = "file", self._read()
            except DigestKeyError as exc:
                # Not fatal (an optional Kubernetes Secret not created yet): start with the env or random key,
                # warn, and keep polling; the file's key is taken when it appears.
                self._warn_unreadable(exc)

    def _warn_unreadable(self, exc: DigestKeyError) -> None:
        if not self._unreadable:  # log the change of state, not every poll
            metrics.ERRORS.labels(kind="digest_key_unreadable").inc()
            _log.warning("digest_key_unreadable", error=str(exc), kept=self.source, generation=self.generation)
        self._unreadable = True

    def _read(self) -> bytes:
        assert self.path is not None
        try:
            with open(self.path, "rb") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise DigestKeyError(f"digest key file {self.path}: {exc.strerror or type(exc).__name__}") from None
        if not key:
            raise DigestKeyError(f"digest key file {self.path} is empty")
        return key

    def reload_if_changed(self) -> bool:
        """Swap in the file's key when its content changed; keep the current key when the file is unusable."""
        try:
            key = self._read()
        except DigestKeyError as exc:
            self._warn_unreadable(exc)
            return False
        self._unreadable = False
        if hmac.compare_digest(key, self.current):
            return False
        self.current, self.source = key, "file"
        self.generation += 1
        _log.info("digest_key_rotated", path=self.path, generation=self.generation)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        if not self.path:
            return
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


_keys: DigestKey | None = None


def configure(path: str | None = None) -> DigestKey:
    """Load the process's key."""
    global _keys
    _keys = DigestKey(path)
    return _keys


def keys() -> DigestKey:
    return _keys if _keys is not None else configure()


def bind_exchange_key() -> None:
    """Pin the current key for the exchange running in this task (and the tasks it starts)."""
    _exchange_key.set(keys().current)


def keyed_digest(value: str) -> str:
    """First 16 hex characters of HMAC-SHA256(key, value)."""
    key = _exchange_key.get() or keys().current
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

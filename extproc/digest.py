"""Keyed digests of matched values, so the same leaked value can be correlated across audit records
without being stored. The key comes from EXTPROC_HMAC_KEY_FILE (a file, re-read when it changes, so it can
be rotated without a restart) or EXTPROC_HMAC_KEY; without either, a random per-process key is used."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

_random_key = secrets.token_bytes(32)
_file_cache: tuple[str, float, bytes] | None = None


def _key() -> bytes:
    global _file_cache
    path = os.environ.get("EXTPROC_HMAC_KEY_FILE")
    if path:
        try:
            mtime = os.stat(path).st_mtime
            if _file_cache is None or _file_cache[:2] != (path, mtime):
                with open(path, "rb") as handle:
                    _file_cache = (path, mtime, handle.read().strip())
            return _file_cache[2]
        except OSError:
            pass
    env = os.environ.get("EXTPROC_HMAC_KEY")
    return env.encode() if env else _random_key


def keyed_digest(value: str) -> str:
    """First 16 hex characters of HMAC-SHA256(key, value)."""
    return hmac.new(_key(), value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

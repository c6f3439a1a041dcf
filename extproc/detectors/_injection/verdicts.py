"""A bounded verdict cache and a per-exchange window budget for the injection encoder.

Chat clients resend the whole history every turn, so the encoder's per-window scores are cached per message
text. Keys are HMAC-SHA256 digests under a random per-process key: the cache holds no text, and its keys
cannot be matched against digests of guessed texts from outside the process. The budget bounds the encoder
windows one exchange may run (cache hits cost nothing); it is a context variable bound per exchange by the
gRPC handler, inherited by the worker threads the exchange scans in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from contextvars import ContextVar

Scores = tuple[tuple[int, int, float], ...]  # (start, end, probability) per window of the text


class VerdictCache:
    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._key = secrets.token_bytes(32)
        self._items: OrderedDict[bytes, Scores] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def get(self, key: bytes) -> Scores | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: bytes, scores: Scores) -> None:
        with self._lock:
            self._items[key] = scores
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class WindowBudget:
    """Encoder windows run so far in one exchange; shared by the threads that scan it. Each detector brings
    its own limit (its `max_windows` param)."""

    def __init__(self) -> None:
        self.used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int, limit: int) -> int:
        """Up to `wanted` windows, fewer (maybe none) once `limit` windows ran in this exchange."""
        with self._lock:
            granted = max(0, min(wanted, limit - self.used))
            self.used += granted
            return granted


_exchange_budget: ContextVar[WindowBudget | None] = ContextVar("injection_window_budget", default=None)


def bind_exchange_budget() -> WindowBudget:
    """Start a fresh budget for the exchange whose task calls this (the gRPC handler, once per stream)."""
    budget = WindowBudget()
    _exchange_budget.set(budget)
    return budget


def exchange_budget() -> WindowBudget | None:
    return _exchange_budget.get()

"""Where token budgets are counted: fixed windows, one counter per (rule, identity, window length, window
number), reserved atomically across all of a rule's windows and adjusted once the real usage is known.

    MemoryStore   one process (one replica, one worker); shared by every policy the process loads, so a
                  policy reload does not reset budgets
    RedisStore    any number of replicas; one Lua script checks and reserves all windows atomically, keys
                  expire when their window ends

Counters are keyed by identity *digests*, never raw keys (see extproc.checks.budgets).
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Slot:
    """The counter of one window for one identity: `key` may hold at most `limit` tokens until `ends_at`."""

    key: str
    limit: int
    ends_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    granted: bool
    used: tuple[int, ...]  # per slot: after the reservation when granted, as found when refused

    def room(self, slots: Sequence[Slot]) -> int:
        """Tokens still free in the fullest window."""
        return max(0, min(slot.limit - used for slot, used in zip(slots, self.used)))

    def retry_after(self, slots: Sequence[Slot], amount: int, now: float) -> int:
        """Seconds until every window that cannot take `amount` more tokens has ended."""
        waits = [slot.ends_at - now for slot, used in zip(slots, self.used) if used + amount > slot.limit]
        return max(1, math.ceil(max(waits, default=1)))


class StoreUnavailable(Exception):
    """The shared store could not be reached in time (the rule's on_error decides what happens)."""


class BudgetStore(ABC):
    @abstractmethod
    async def reserve(self, slots: Sequence[Slot], amount: int, now: float, force: bool = False) -> Outcome:
        """Add `amount` to every slot if each stays within its limit (all or none); with `force`, add it
        regardless (monitor mode still counts use)."""

    @abstractmethod
    async def adjust(self, slots: Sequence[Slot], delta: int, now: float) -> None:
        """Add `delta` (negative = refund) to the slots whose window has not ended; never below zero."""

    async def close(self) -> None:
        return None


class MemoryStore(BudgetStore):
    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self._used: dict[str, tuple[int, float]] = {}  # key -> (tokens, window end)
        self._next_sweep = 0.0

    async def reserve(self, slots: Sequence[Slot], amount: int, now: float, force: bool = False) -> Outcome:
        # No await inside: on the event loop this runs as one atomic step.
        self._sweep(now)
        used = tuple(self._current(slot.key, now) for slot in slots)
        if not force and any(u + amount > slot.limit for slot, u in zip(slots, used)):
            return Outcome(False, used)
        for slot, u in zip(slots, used):
            self._used[slot.key] = (u + amount, slot.ends_at)
        return Outcome(True, tuple(u + amount for u in used))

    async def adjust(self, slots: Sequence[Slot], delta: int, now: float) -> None:
        for slot in slots:
            entry = self._used.get(slot.key)
            if entry is not None and entry[1] > now:
                self._used[slot.key] = (max(0, entry[0] + delta), entry[1])

    def used(self, key: str, now: float) -> int:
        return self._current(key, now)

    def clear(self) -> None:
        self._used.clear()

    def _current(self, key: str, now: float) -> int:
        entry = self._used.get(key)
        return entry[0] if entry is not None and entry[1] > now else 0

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        for key in [k for k, (_, ends_at) in self._used.items() if ends_at <= now]:
            del self._used[key]


MEMORY = MemoryStore()

# KEYS: one per window. ARGV: amount, force (1/0), then per key i: limit at 1 + 2i, ttl seconds at 2 + 2i.
# Returns {granted (1/0), used_1, used_2, ...}.
RESERVE_LUA = """
local amount = tonumber(ARGV[1])
local used = {}
local fits = true
for i, key in ipairs(KEYS) do
  used[i] = tonumber(redis.call('GET', key) or '0')
  if used[i] + amount > tonumber(ARGV[1 + 2 * i]) then fits = false end
end
if not fits and ARGV[2] ~= '1' then
  table.insert(used, 1, 0)
  return used
end
for i, key in ipairs(KEYS) do
  used[i] = redis.call('INCRBY', key, amount)
  redis.call('EXPIRE', key, ARGV[2 + 2 * i])
end
table.insert(used, 1, 1)
return used
"""

# KEYS: the windows reserved earlier. ARGV: delta. A key whose window already expired is left alone
# (INCRBY would recreate it without an expiry).
ADJUST_LUA = """
local delta = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local value = redis.call('INCRBY', key, delta)
    if value < 0 then redis.call('INCRBY', key, -value) end
  end
end
return 0
"""


class RedisStore(BudgetStore):
    """Budgets shared by every replica through one Redis. The client is created on first use (in the
    serving event loop), with `timeout` seconds for connecting and for each reply and no retries: a slow
    or absent Redis costs at most about `timeout` per exchange before the rule's on_error applies."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}

    async def reserve(self, slots: Sequence[Slot], amount: int, now: float, force: bool = False) -> Outcome:
        args: list[Any] = [amount, 1 if force else 0]
        for slot in slots:
            args += [slot.limit, max(1, math.ceil(slot.ends_at - now))]
        reply = await self._run("reserve", [slot.key for slot in slots], args)
        return Outcome(bool(reply[0]), tuple(int(v) for v in reply[1:]))

    async def adjust(self, slots: Sequence[Slot], delta: int, now: float) -> None:
        await self._run("adjust", [slot.key for slot in slots], [delta])

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError

        scripts = self._connected()
        try:
            return await scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from None

    def _connected(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # connections belong to the loop that made them
            import redis.asyncio as redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                                socket_connect_timeout=self.timeout, retry=Retry(NoBackoff(), 0))
            self._loop = loop
            self._scripts = {"reserve": self._client.register_script(RESERVE_LUA),
                             "adjust": self._client.register_script(ADJUST_LUA)}
        return self._scripts

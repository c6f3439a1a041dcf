"""Budget stores: the same arithmetic in memory and in a real Redis (all-or-none across windows, forced use,
refunds that never go below zero, ended windows left alone), plus what only Redis has: key expiry,
atomicity between two clients, and a clear failure when it is unreachable."""

from __future__ import annotations

import asyncio
import time

import pytest

from extproc.budget_store import MemoryStore, Outcome, RedisStore, Slot, StoreUnavailable
from extproc.stack import free_port
from tests.redis_server import RedisServer

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    server = request.getfixturevalue("redis_server")
    server.client().flushall()
    return RedisStore(server.url, timeout=1.0)


def slots(hour_limit=100, day_limit=150, prefix="t"):
    return [Slot(f"{prefix}:3600", hour_limit, NOW + 600), Slot(f"{prefix}:86400", day_limit, NOW + 7200)]


def run(coro):
    return asyncio.run(coro)


def test_a_reservation_is_added_to_every_window(store):
    outcome = run(store.reserve(slots(), 60, NOW))
    assert outcome == Outcome(True, (60, 60))
    assert run(store.reserve(slots(), 30, NOW)) == Outcome(True, (90, 90))


def test_a_reservation_that_one_window_cannot_hold_changes_no_window(store):
    run(store.reserve(slots(), 90, NOW))
    refused = run(store.reserve(slots(), 20, NOW))
    assert refused == Outcome(False, (90, 90))  # the hour window (100) refuses; the day window is untouched
    assert run(store.reserve(slots(), 10, NOW)) == Outcome(True, (100, 100))


def test_the_day_window_refuses_when_the_hour_window_has_room(store):
    day = slots(prefix="a")[1]
    run(store.reserve(slots(prefix="a"), 90, NOW))
    run(store.reserve([Slot("b:3600", 100, NOW + 600), day], 50, NOW))  # another hour window, same day
    assert run(store.reserve(slots(prefix="a"), 5, NOW)) == Outcome(True, (95, 145))
    assert run(store.reserve(slots(prefix="a"), 5, NOW)) == Outcome(True, (100, 150))
    assert run(store.reserve([Slot("c:3600", 100, NOW + 600), day], 1, NOW)) == Outcome(False, (0, 150))


def test_forced_use_is_counted_past_the_limit(store):
    run(store.reserve(slots(), 90, NOW))
    assert run(store.reserve(slots(), 50, NOW, force=True)) == Outcome(True, (140, 140))


def test_adjust_settles_and_refunds_without_going_below_zero(store):
    run(store.reserve(slots(), 80, NOW))
    run(store.adjust(slots(), -30, NOW))  # the exchange used 50 of the 80 reserved
    assert run(store.reserve(slots(), 0, NOW)).used == (50, 50)
    run(store.adjust(slots(), 25, NOW))  # it used more than reserved
    assert run(store.reserve(slots(), 0, NOW)).used == (75, 75)
    run(store.adjust(slots(), -500, NOW))
    assert run(store.reserve(slots(), 0, NOW)).used == (0, 0)


def test_room_and_retry_after():
    window = slots()
    refused = Outcome(False, (90, 100))
    assert refused.room(window) == 10  # the hour window: 100 - 90; the day window has 50
    assert refused.retry_after(window, 20, NOW) == 600  # only the hour window cannot take 20 more
    assert refused.retry_after(window, 70, NOW) == 7200  # both windows refuse: wait for the later one
    assert refused.retry_after(window, 20, NOW + 599.2) == 1  # rounded up, never 0
    assert Outcome(True, (140, 140)).room(window) == 0


def test_memory_windows_end_and_are_swept():
    store = MemoryStore()
    run(store.reserve(slots(), 90, NOW))
    later = NOW + 601  # the hour window has ended, the day window has not
    assert run(store.reserve(slots(), 0, later)).used == (0, 90)
    run(store.adjust(slots(), -50, later))  # a refund to an ended window changes nothing
    assert store.used("t:86400", later) == 40 and store.used("t:3600", later) == 0
    run(store.reserve([], 0, NOW + 10_000))
    assert store._used == {}


def test_redis_keys_expire_with_their_window(redis_server):
    redis_server.client().flushall()
    store = RedisStore(redis_server.url, timeout=1.0)
    now = time.time()
    run(store.reserve([Slot("e:60", 100, now + 42), Slot("e:3600", 100, now + 3000)], 7, now))
    client = redis_server.client()
    assert 41 <= client.ttl("e:60") <= 42 and 2999 <= client.ttl("e:3600") <= 3000
    client.delete("e:60")  # as if its window had ended
    run(store.adjust([Slot("e:60", 100, now + 42), Slot("e:3600", 100, now + 3000)], 5, now))
    assert client.exists("e:60") == 0 and client.get("e:3600") == "12"


def test_redis_reservations_from_two_clients_never_overspend(redis_server):
    redis_server.client().flushall()
    window = [Slot("race:60", 100, NOW + 60)]

    async def race():
        first, second = RedisStore(redis_server.url, 1.0), RedisStore(redis_server.url, 1.0)
        outcomes = await asyncio.gather(*(s.reserve(window, 7, NOW) for _ in range(20) for s in (first, second)))
        await first.close()
        await second.close()
        return outcomes

    granted = [o for o in run(race()) if o.granted]
    assert len(granted) == 14  # 14 * 7 = 98 <= 100 < 105
    assert sorted(o.used[0] for o in granted) == [7 * i for i in range(1, 15)]
    assert redis_server.client().get("race:60") == "98"


def test_an_unreachable_redis_fails_fast_with_store_unavailable():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        run(store.reserve(slots(), 1, NOW))
    assert time.monotonic() - started < 2  # no retries with backoff

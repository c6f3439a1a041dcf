"""Keyed digests: where the key comes from, rotation by rewriting the key file, one key per exchange."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest
import structlog

from extproc import digest

KEY1, KEY2 = b"first-key-0123456789abcdef", b"second-key-0123456789abcdef"


def expected(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    monkeypatch.delenv(digest.ENV_FILE, raising=False)
    monkeypatch.delenv(digest.ENV_KEY, raising=False)
    path = tmp_path / "hmac.key"
    path.write_bytes(KEY1 + b"\n")
    yield path
    digest._keys = None


def test_key_from_file_is_stripped_and_used(key_file):
    digest.configure(str(key_file))
    assert digest.keyed_digest("sk-value") == expected(KEY1, "sk-value")


def test_env_file_then_env_key_then_random(key_file, monkeypatch):
    monkeypatch.setenv(digest.ENV_FILE, str(key_file))
    monkeypatch.setenv(digest.ENV_KEY, "env-key")
    assert digest.DigestKey().current == KEY1
    monkeypatch.delenv(digest.ENV_FILE)
    assert (digest.DigestKey().source, digest.DigestKey().current) == ("env", b"env-key")
    monkeypatch.delenv(digest.ENV_KEY)
    first, second = digest.DigestKey(), digest.DigestKey()
    assert first.source == "random" and first.current != second.current


def test_rotation_swaps_the_key_and_logs_no_key(key_file):
    keys = digest.configure(str(key_file))
    assert keys.reload_if_changed() is False  # same content, no rotation
    key_file.write_bytes(KEY2)
    with structlog.testing.capture_logs() as logs:
        assert keys.reload_if_changed() is True
    assert digest.keyed_digest("sk-value") == expected(KEY2, "sk-value")
    assert [(r["event"], r["generation"]) for r in logs] == [("digest_key_rotated", 2)]
    assert KEY1.decode() not in repr(logs) and KEY2.decode() not in repr(logs)


@pytest.mark.parametrize("damage", ["remove", "empty"])
def test_unusable_file_keeps_the_key_and_warns_once(key_file, damage):
    keys = digest.configure(str(key_file))
    key_file.unlink() if damage == "remove" else key_file.write_bytes(b"  \n")
    with structlog.testing.capture_logs() as logs:
        assert keys.reload_if_changed() is False
        assert keys.reload_if_changed() is False
    assert [r["event"] for r in logs] == ["digest_key_unreadable"]
    assert digest.keyed_digest("v") == expected(KEY1, "v")
    key_file.write_bytes(KEY2)
    assert keys.reload_if_changed() is True


def test_missing_file_at_start_uses_a_random_key_until_the_file_appears(key_file):
    key_file.unlink()
    with structlog.testing.capture_logs() as logs:
        keys = digest.configure(str(key_file))
        assert keys.reload_if_changed() is False
    assert [r["event"] for r in logs] == ["digest_key_unreadable"] and "No such file" in logs[0]["error"]
    assert keys.source == "random" and keys.current not in (KEY1, KEY2)
    key_file.write_bytes(KEY2)
    assert keys.reload_if_changed() is True
    assert (keys.source, digest.keyed_digest("v")) == ("file", expected(KEY2, "v"))


def test_an_exchange_keeps_the_key_it_started_with(key_file):
    keys = digest.configure(str(key_file))
    started, rotated, done = asyncio.Event(), asyncio.Event(), []

    async def exchange() -> None:
        digest.bind_exchange_key()
        before = digest.keyed_digest("v")
        started.set()
        await rotated.wait()
        # background work started by the exchange inherits its key too
        after = await asyncio.get_running_loop().create_task(asyncio.to_thread(digest.keyed_digest, "v"))
        done.append((before, after))

    async def main() -> str:
        task = asyncio.create_task(exchange())
        await started.wait()
        key_file.write_bytes(KEY2)
        keys.reload_if_changed()
        rotated.set()
        await task
        new_exchange = asyncio.create_task(_bound_digest())
        return await new_exchange

    new = asyncio.run(main())
    assert done == [(expected(KEY1, "v"), expected(KEY1, "v"))]
    assert new == expected(KEY2, "v")


async def _bound_digest() -> str:
    digest.bind_exchange_key()
    return digest.keyed_digest("v")


def test_missing_file_falls_back_to_the_env_key(key_file, monkeypatch):
    key_file.unlink()
    monkeypatch.setenv(digest.ENV_KEY, "env-key")
    keys = digest.configure(str(key_file))
    assert (keys.source, digest.keyed_digest("v")) == ("env", expected(b"env-key", "v"))

"""A throwaway redis-server on a free port for budget tests: no persistence, stopped by PID, restartable on
the same port (to test what happens while it is down)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from extproc.stack import free_port, wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self) -> None:
        if not os.path.exists(REDIS_SERVER):
            pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis budget store "
                        "is tested against a real server only")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.workdir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 10, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self):  # a synchronous client for assertions
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)

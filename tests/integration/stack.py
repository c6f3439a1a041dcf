"""Real Envoy + the ext_proc service (as a subprocess) + a scripted upstream, on ports chosen at run time.

Readiness is awaited (gRPC port open, Envoy /ready), never slept for; processes are stopped by PID; logs
are kept in files and printed when a test fails.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from extproc.envoy_config import ExtProcTls, StackPorts, render_yaml
from extproc.envoy_edge import EdgeLimits
from extproc.stack import envoy_binary, free_port, wait_for_envoy, wait_for_port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Stack:
    workdir: str
    policy_text: str
    upstream_url: str
    message_timeout: str = "2s"
    workers: int = 1
    service_args: tuple[str, ...] = ()  # extra `extproc serve` flags (TLS, limits, ...)
    service_env: dict[str, str] = field(default_factory=dict)
    extproc_tls: ExtProcTls | None = None  # how Envoy connects to the service
    edge: EdgeLimits = field(default_factory=EdgeLimits)  # Envoy's timeouts and size limits
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> Stack:
        self.policy_path = os.path.join(self.workdir, "policy.yaml")
        self.write_policy(self.policy_text)
        self.grpc_port, self.metrics_port = free_port(), free_port()
        self.start_service()
        self.listen_port, self.admin_port = free_port(), free_port()
        ports = StackPorts(listen_port=self.listen_port, admin_port=self.admin_port,
                           extproc_ports=[self.grpc_port + i for i in range(self.workers)], upstream=self.upstream_url,
                           message_timeout=self.message_timeout, extproc_tls=self.extproc_tls, edge=self.edge)
        config = os.path.join(self.workdir, "envoy.yaml")
        with open(config, "w") as handle:
            handle.write(render_yaml(ports))
        self.procs["envoy"] = self._spawn("envoy", [envoy_binary(), "-c", config, "--disable-hot-restart",
                                                    "--log-level", "warn", "--concurrency", "1"])
        wait_for_envoy(self.admin_port, 30, self.procs["envoy"])
        return self

    def start_service(self) -> None:
        argv = [sys.executable, "-m", "extproc", "serve", "--policy", self.policy_path,
                "--listen", f"127.0.0.1:{self.grpc_port}", "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                "--drain-seconds", "10", "--workers", str(self.workers), *self.service_args]
        env = {**os.environ, "EXTPROC_HMAC_KEY": "test-key", "PYTHONUNBUFFERED": "1", **self.service_env}
        self.procs["service"] = self._spawn("service", argv, env)
        for i in range(self.workers):
            wait_for_port(self.grpc_port + i, 30, self.procs["service"])

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(os.path.join(self.workdir, f"{name}.log"), "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def write_policy(self, text: str) -> None:
        tmp = self.policy_path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, self.policy_path)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def log(self, name: str) -> str:
        with open(os.path.join(self.workdir, f"{name}.log"), encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def audit_records(self) -> list[dict]:
        records = []
        for line in self.log("service").splitlines():
            if line.startswith("{") and '"exchange_completed"' in line:
                records.append(json.loads(line))
        return records

    def wait_for_audit(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.audit_records()
            if len(records) >= count:
                return records
            time.sleep(0.02)
        raise AssertionError(f"expected {count} audit records, got {len(self.audit_records())}")

    def audit_for(self, request_id: str, timeout: float = 10.0) -> dict:
        """The audit record of the exchange sent with `x-request-id: request_id` (Envoy keeps the id)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.audit_records():
                if record.get("request_id") == request_id:
                    return record
            time.sleep(0.02)
        raise AssertionError(f"no audit record for request {request_id}")

    def metrics(self, worker: int = 0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port + worker}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def post(self, path: str, payload, headers: dict | None = None, raw: bytes | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.listen_port, timeout=30)
        body = raw if raw is not None else json.dumps(payload).encode()
        conn.request("POST", path, body=body, headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def stream(self, path: str, payload, headers: dict | None = None,
               on_first_bytes=None) -> tuple[Reply, list[tuple[float, bytes]]]:
        """POST and read the body as it arrives: (reply, [(monotonic time, bytes), ...])."""
        conn = http.client.HTTPConnection("127.0.0.1", self.listen_port, timeout=30)
        conn.request("POST", path, body=json.dumps(payload).encode(),
                     headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        pieces = []
        while True:
            data = response.read1(65536)
            if not data:
                break
            pieces.append((time.monotonic(), data))
            if on_first_bytes is not None and len(pieces) == 1:
                on_first_bytes()
        conn.close()
        body = b"".join(p for _, p in pieces)
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body), pieces

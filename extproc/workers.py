"""`serve --workers N`: one service process per core. By default each worker listens on its own port
(consecutive from --listen's port) and Envoy round-robins across them; with --reuse-port they share one port
via SO_REUSEPORT, which was measured to balance poorly because Envoy opens only a couple of HTTP/2
connections."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys


def worker_argv(args: argparse.Namespace, index: int) -> list[str]:
    host, _, port = args.listen.rpartition(":")
    listen = args.listen if args.reuse_port else f"{host}:{int(port) + index}"
    argv = [sys.executable, "-m", "extproc", "serve", "--listen", listen, "--workers", "1",
            "--drain-seconds", str(args.drain_seconds), "--log-level", args.log_level,
            "--max-streams", str(args.max_streams)]
    if args.policy:
        argv += ["--policy", args.policy]
    if args.metrics_listen:
        mhost, _, mport = args.metrics_listen.rpartition(":")
        argv += ["--metrics-listen", f"{mhost}:{int(mport) + index}"]
    if args.reuse_port:
        argv.append("--reuse-port")
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "digest_key_file", "shadow_policy"):
        if getattr(args, flag):
            argv += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return argv


def run_workers(args: argparse.Namespace) -> int:
    children = [subprocess.Popen(worker_argv(args, i)) for i in range(args.workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)

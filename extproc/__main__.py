"""The `extproc` command line: serve, up, policy check|schema|test, scan, envoy-config, health."""

from __future__ import annotations

import argparse
import sys

from extproc import __version__

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return int(value)


def upstream_url(value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected http(s)://HOST[:PORT], got {value!r}")
    return value


class Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr (exit 2); `--help` still shows the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the ext_proc gRPC service")
    p.add_argument("--policy", help="policy YAML (hot-reloaded); the built-in default policy if omitted")
    p.add_argument("--shadow-policy", help="a candidate policy YAML (hot-reloaded) evaluated on the same live "
                   "exchanges without changing them; differences go to the audit record and metrics")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT for gRPC (default %(default)s)")
    p.add_argument("--metrics-listen", help="HOST:PORT for Prometheus /metrics (off if omitted)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, on consecutive ports from --listen's port (metrics ports likewise)")
    p.add_argument("--reuse-port", action="store_true",
                   help="workers share one port via SO_REUSEPORT (measured unreliable behind Envoy)")
    p.add_argument("--drain-seconds", type=float, default=30.0, help="grace period on SIGTERM")
    p.add_argument("--tls-cert", help="server certificate (PEM) for TLS to Envoy")
    p.add_argument("--tls-key", help="server private key (PEM)")
    p.add_argument("--tls-client-ca", help="CA bundle to require and verify Envoy's client certificate (mTLS)")
    p.add_argument("--max-streams", type=int, default=1000,
                   help="exchanges in flight per process before new ones are refused (Envoy answers 503); "
                   "0: no cap (default %(default)s)")
    p.add_argument("--digest-key-file", help="HMAC key for audit digests (re-read when it changes; "
                   "default: $EXTPROC_HMAC_KEY_FILE, else $EXTPROC_HMAC_KEY, else a random key per process)")
    p.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS)


def _up_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the local stack: Envoy + this service + a model upstream")
    p.add_argument("--upstream", type=upstream_url, help="model server URL (default: a built-in demo model server)")
    p.add_argument("--port", type=port, default=10000, help="port Envoy listens on (default %(default)s)")
    p.add_argument("--policy", help="policy YAML (hot-reloaded); the built-in default policy if omitted")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--service-port", type=port, default=50051,
                   help="gRPC port of the policy service (workers: consecutive ports; default %(default)s)")
    p.add_argument("--metrics-port", type=port, default=9090,
                   help="Prometheus /metrics port of the service (workers: consecutive; default %(default)s)")
    p.add_argument("--admin-port", type=port, default=9901, help="Envoy admin port (default %(default)s)")
    p.epilog = "A port of 0 picks any free port. `up` refuses to start when one of its ports is taken."


def _policy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="validate, test or describe policy files")
    psub = p.add_subparsers(dest="policy_command", required=True)
    check = psub.add_parser("check", help="validate a policy file (exit 1 with the problems if invalid)")
    check.add_argument("path")
    psub.add_parser("schema", help="print the policy JSON Schema (for editors and CI)")
    test = psub.add_parser("test", help="run a policy's test cases (a YAML list of text -> expected action)")
    test.add_argument("path")
    test.add_argument("--cases", help="cases file (default: PATH with .tests.yaml)")
    diff = psub.add_parser("diff", help="replay recorded exchanges through two policies; show where they differ")
    diff.add_argument("active")
    diff.add_argument("candidate")
    diff.add_argument("--traffic", required=True, help="JSON lines: audit records with an `exchange` (rules "
                      "with capture: true record them) or bare exchanges in the policy-test format")


def _misc_parsers(sub: argparse._SubParsersAction) -> None:
    scan = sub.add_parser("scan", help="scan JSON Lines {\"text\": ...} from stdin with a policy")
    scan.add_argument("--policy")
    scan.add_argument("--direction", choices=["request", "response"], default="request")
    cfg = sub.add_parser("envoy-config", help="print the Envoy bootstrap used by `up`")
    cfg.add_argument("--port", type=port, default=10000)
    cfg.add_argument("--extproc-port", type=port, action="append")
    cfg.add_argument("--upstream", type=upstream_url, default="http://127.0.0.1:11434")
    health = sub.add_parser("health", help="query the gRPC health service (exit 0 when SERVING)")
    health.add_argument("--target", default="127.0.0.1:50051",
                        help="HOST:PORT of the service (default %(default)s: `serve` and `up` defaults)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="extproc", description="LLM policy gateway for Envoy (ext_proc).")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _up_parser(sub)
    _policy_parser(sub)
    _misc_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from extproc import cli  # imported late so `--help` stays fast

    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())

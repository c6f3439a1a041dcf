"""What each `extproc` subcommand does (argument parsing lives in __main__)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from extproc import logs


class CliError(Exception):
    """Bad input found before anything started; one line for the terminal."""


def run(args: argparse.Namespace) -> int:
    """Run a subcommand; bad input (files, ports, policies, cases) is reported in one line, never a traceback."""
    from extproc.policy.load import PolicyError
    from extproc.policy_cases import CasesError
    from extproc.stack import StackError

    handler = {"serve": _serve, "up": _up, "policy": _policy, "scan": _scan, "envoy-config": _envoy_config,
               "health": _health}[args.command]
    try:
        return handler(args)
    except (CliError, PolicyError, StackError, CasesError, OSError) as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "policy_command", None))))
        print(f"extproc {command}: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _serve(args: argparse.Namespace) -> int:
    from extproc.server import ServeOptions, serve

    _check_serve(args)
    logs.configure(args.log_level)
    if args.workers > 1:
        from extproc.workers import run_workers

        return run_workers(args)
    options = ServeOptions(listen=args.listen, policy=args.policy, metrics_listen=args.metrics_listen,
                           drain_seconds=args.drain_seconds, reuse_port=args.reuse_port, tls_cert=args.tls_cert,
                           tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                           digest_key_file=args.digest_key_file, max_streams=args.max_streams,
                           shadow_policy=args.shadow_policy)
    asyncio.run(serve(options))
    return 0


def _check_serve(args: argparse.Namespace) -> None:
    """Refuse what would fail later with a traceback from grpc or the metrics server."""
    from extproc.stack import port_taken

    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    for flag, listen in (("--listen", args.listen), ("--metrics-listen", args.metrics_listen)):
        if listen is None:
            continue
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise CliError(f"{flag}: expected HOST:PORT, got {listen!r}")
        first = int(port)
        shared = args.reuse_port and flag == "--listen"  # workers share it on purpose (SO_REUSEPORT)
        for number in range(first, first + args.workers) if first and not shared else ():
            if port_taken(number, host.strip("[]") or "0.0.0.0"):
                raise CliError(f"{flag}: port {number} is already in use")


def _up(args: argparse.Namespace) -> int:
    from extproc.stack import run_stack

    return run_stack(args)


def _policy(args: argparse.Namespace) -> int:
    if args.policy_command == "schema":
        from extproc.policy.schema import json_schema

        print(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.policy_command == "test":
        from extproc.policy_cases import run_cases

        logs.configure("warning")  # exchange cases would print an audit record each
        return run_cases(args.path, args.cases)
    from extproc.policy.reload import compile_text

    if args.policy_command == "diff":
        return _policy_diff(args)
    with open(args.path, encoding="utf-8") as handle:
        policy = compile_text(handle.read(), args.path)
    print(f"{args.path}: OK ({len(policy.rules) + len(policy.checks)} rules, digest {policy.digest[:12]})")
    return 0


def _policy_diff(args: argparse.Namespace) -> int:
    from extproc.policy.reload import compile_text
    from extproc.policy_diff import diff

    logs.configure("warning")  # each replayed exchange would print an audit record
    policies = []
    for path in (args.active, args.candidate):
        with open(path, encoding="utf-8") as handle:
            policies.append(compile_text(handle.read(), path))
    with open(args.traffic, encoding="utf-8") as traffic:
        diff(policies[0], policies[1], traffic, sys.stdout)
    return 0


def _scan(args: argparse.Namespace) -> int:
    from extproc.scan import scan_lines

    return scan_lines(args.policy, args.direction, sys.stdin, sys.stdout)


def _envoy_config(args: argparse.Namespace) -> int:
    from extproc.envoy_config import StackPorts, render_yaml

    ports = StackPorts(listen_port=args.port, extproc_ports=args.extproc_port or [50051], upstream=args.upstream)
    sys.stdout.write(render_yaml(ports))
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1

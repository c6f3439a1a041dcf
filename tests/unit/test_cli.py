"""Bad input to any subcommand: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]
POLICY = "version: 1\nrules:\n  - {id: keys, detector: secrets}\n"


def extproc(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extproc", *argv], check=False, capture_output=True, text=True,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=timeout)


def refused(*argv: str, code: int = 1) -> str:
    """Run the CLI, check it refused cleanly, and return its one line."""
    done = extproc(*argv)
    assert done.returncode == code, done
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "p.yaml").write_text(POLICY)
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["serve", "--listen", "127.0.0.1:0", "--policy", "{d}/missing.yaml"], ["policy", "check", "{d}/missing.yaml"],
    ["policy", "test", "{d}/missing.yaml"], ["scan", "--policy", "{d}/missing.yaml"],
    ["up", "--policy", "{d}/missing.yaml"], ["policy", "test", "{d}/p.yaml", "--cases", "{d}/missing.yaml"],
])
def test_a_missing_file_is_one_line(files, argv):
    line = refused(*(a.format(d=files) for a in argv))
    assert line.startswith(f"extproc {argv[0]}") and "missing.yaml: No such file or directory" in line


@pytest.mark.parametrize("command", [["serve", "--listen", "127.0.0.1:0", "--policy"], ["up", "--policy"],
                                     ["policy", "check"]])
def test_an_empty_policy_file_is_refused_before_anything_starts(files, command):
    (files / "empty.yaml").write_text("")
    assert "empty.yaml: the file is empty" in refused(*command, str(files / "empty.yaml"))


def test_bad_log_level_is_a_usage_error():
    line = refused("serve", "--log-level", "loud", code=2)
    assert "--log-level" in line and "'loud'" in line and "info" in line
    assert "Traceback" not in extproc("serve", "--log-level", "WARNING", "--listen", "nonsense").stderr


@pytest.mark.parametrize(("argv", "problem"), [
    (["up", "--port", "70000"], "expected a port number 0-65535, got '70000'"),
    (["up", "--admin-port", "-1"], "expected a port number"),
    (["up", "--upstream", "http://x:99999"], "Port out of range"),
    (["up", "--upstream", "localhost:11434"], "expected http(s)://HOST[:PORT]"),
    (["envoy-config", "--upstream", "notaurl"], "expected http(s)://HOST[:PORT]"),
    (["envoy-config", "--extproc-port", "x"], "expected a port number"),
])
def test_bad_ports_and_urls_are_usage_errors(argv, problem):
    assert problem in refused(*argv, code=2)


@pytest.mark.parametrize("argv", [
    ["serve", "--listen", "127.0.0.1:{port}"],
    ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:{port}"],
])
def test_serve_refuses_a_busy_port(busy_port, argv):
    line = refused(*(a.format(port=busy_port) for a in argv))
    assert f"port {busy_port} is already in use" in line


@pytest.mark.parametrize("flag", ["--port", "--service-port", "--metrics-port", "--admin-port"])
def test_up_refuses_any_of_its_ports_when_taken(busy_port, flag):
    ports = {"--port": "0", "--service-port": "0", "--metrics-port": "0", "--admin-port": "0", flag: str(busy_port)}
    line = refused("up", *[x for pair in ports.items() for x in pair])
    assert f"port already in use: {busy_port} ({flag})" in line


@pytest.mark.parametrize(("cases", "problem"), [
    ("cases: [1, 2\n", "not valid YAML (line 2)"),
    ("- text: hi\n", "non-empty `cases:` list"),
    ("cases: []\n", "non-empty `cases:` list"),
    ("cases:\n  - just a string\n", "case 1: expected a mapping"),
    ("cases:\n  - {text: hi, expect: allow}\n  - {text: hi}\n", "case 2: `expect:` must be one of"),
    ("cases:\n  - {expect: deny}\n", "case 1: needs a string `text:`"),
    ("cases:\n  - {text: hi, expect: deny, direction: sideways}\n", "`direction:` must be request or response"),
    ("cases:\n  - {exchange: [1], expect: deny}\n", "`exchange:` must be a mapping"),
    ("cases:\n  - {exchange: {path: /v1/x}, expect: deny}\n", "with a `request:` mapping"),
    ("cases:\n  - {exchange: {request: {}, headers: [1]}, expect: deny}\n", "`exchange.headers` must be a mapping"),
    ("cases:\n  - {exchange: {request: {}, headers: {x: 1}}, expect: deny}\n", "to string values"),
    ("cases:\n  - {exchange: {request: {}, path: 5}, expect: deny}\n", "`exchange.path` must be a string"),
    ("cases:\n  - {exchange: {request: {}, stream: x}, expect: deny}\n", "`exchange.stream` must be a list"),
])
def test_malformed_test_cases_are_one_line(files, cases, problem):
    (files / "c.yaml").write_text(cases)
    line = refused("policy", "test", str(files / "p.yaml"), "--cases", str(files / "c.yaml"))
    assert line.startswith(f"extproc policy test: {files / 'c.yaml'}: ") and problem in line


def test_well_formed_cases_still_run(files):
    (files / "c.yaml").write_text("cases:\n  - {text: 'key AKIAZ7QW3RT5YUI2OP4L', expect: deny}\n")
    done = extproc("policy", "test", str(files / "p.yaml"), "--cases", str(files / "c.yaml"))
    assert done.returncode == 0 and "1 passed, 0 failed" in done.stdout


def test_workers_below_one_are_refused():
    assert "--workers must be at least 1" in refused("up", "--workers", "0")
    assert "--workers must be at least 1" in refused("serve", "--workers", "0")


def test_health_default_target_is_where_serve_and_up_listen():
    parser = build_parser()
    health = parser.parse_args(["health"]).target
    assert health == parser.parse_args(["serve"]).listen
    assert health == f"127.0.0.1:{parser.parse_args(['up']).service_port}"


def test_serve_workers_sharing_a_port_with_reuse_port_are_not_refused():
    from argparse import Namespace

    from extproc.cli import CliError, _check_serve

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a sibling worker binds it
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listen = f"127.0.0.1:{sock.getsockname()[1]}"
        _check_serve(Namespace(workers=2, listen=listen, metrics_listen=None, reuse_port=True))
        with pytest.raises(CliError, match="already in use"):
            _check_serve(Namespace(workers=2, listen=listen, metrics_listen=None, reuse_port=False))

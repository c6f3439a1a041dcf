"""Fuzzing the Session boundary: whatever Envoy (or a confused peer) sends, in whatever order, the session
answers every message with exactly one ProcessingResponse of the matching kind (or an ImmediateResponse),
never raises, writes exactly one audit record at the end, and no planted secret reaches a log record or an
error body. Plus: shape request parsers given random JSON only ever raise MalformedRequest.

Execution budget: `EXTPROC_FUZZ_EXAMPLES` (default 300 per property; a third of it for the shape hooks) and,
for a fresh random seed each run instead of the derandomized default, `EXTPROC_FUZZ_RANDOM=1`. Bug hunting ran
EXTPROC_FUZZ_RANDOM=1 EXTPROC_FUZZ_EXAMPLES=5000 pytest tests/unit/test_session_fuzz.py --timeout=0 \
    --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import gzip
import os

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policies import SECRET_PATTERN, policy
from sessions import header_map, request_body, request_headers, response_body, response_headers

from extproc import pb, shapes
from extproc.canonical_json import MAX_DEPTH
from extproc.errors import MalformedRequest
from extproc.session import Session

EXAMPLES = int(os.environ.get("EXTPROC_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("EXTPROC_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
# The shape hooks are also fuzzed from mutated goldens in test_shapes_errors.py: a third of the budget here.
FUZZ_HOOKS = settings(FUZZ, max_examples=max(30, EXAMPLES // 3))

# Planted secrets: one for the test regex rule, one each for the built-in secrets and e-mail detectors.
SECRET = "sk-" + "Zq8Wm3Xv7Lp2Nr5Tb9Yc4Hd"
AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
EMAIL = "planted.person@example.org"
PLANTED = (SECRET, AWS_KEY, EMAIL)

SHAPE_PATHS = sorted({path for shape in shapes.all_shapes().values() for path in shape.paths})
OTHER_PATHS = ["/", "/healthz", "/v1/models", "/v1/chat/completions/", "/api/chat?x=1", "//", "/v1/chat/completion"]

_RULES = f"""
  - id: deny-secrets
    detector: secrets
    direction: request
    action: deny
    match: {{headers: {{x-fuzz: [deny]}}}}
  - id: redact-test-secret
    detector: regex
    action: redact
    params: {{patterns: [{{label: test_secret, pattern: "{SECRET_PATTERN}", max_length: 43}}]}}
  - id: redact-secrets
    detector: secrets
    action: redact
  - id: redact-email
    detector: email
    direction: response
    action: redact
  - id: watch-words
    detector: regex
    direction: request
    action: deny
    mode: monitor
    params: {{patterns: [{{label: word, pattern: "(?i)ignore (all|previous) instructions", max_length: 40}}]}}
"""
POLICIES = [
    policy("version: 1\nsettings: {max_request_bytes: 262144, max_stream_held_bytes: 2048}\nrules:" + _RULES),
    policy("version: 1\nsettings: {unknown_paths: deny, max_request_bytes: 1024, max_response_bytes: 1024,"
           " on_stream_limit: fail_open, max_stream_held_bytes: 1024, track_stream_usage: true}\nrules:" + _RULES),
    policy("version: 1\nallow_empty: true\nrules: []\n"),
]


# ---- strategies: JSON ---------------------------------------------------------------------------------------
KEYS = ["messages", "content", "role", "text", "input", "prompt", "system", "suffix", "instructions", "tool_calls",
        "function", "arguments", "choices", "delta", "message", "type", "index", "stream", "tools", "thinking",
        "response", "output", "part", "item", "done", "usage", "finish_reason", "content_block", "source", "data",
        "output_index", "content_index", "stream_options", "include_usage", "x_vendor", "é", ""]
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from([*PLANTED, f"key {SECRET} end", f"mail {EMAIL}!", f"aws={AWS_KEY}", "user", "assistant", "tool",
                     "text", "tool_use", "tool_result", "message", "function_call", "content_block_delta",
                     "text_delta", "response.output_text.delta", "stop", "\x00", "\ud7ff\uffff", "🎉" * 5]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False,
                    allow_infinity=False), texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=6)),
    max_leaves=30,
)


def _nested(depth: int, leaf) -> bytes:
    """JSON nested `depth` levels deep (lists and objects alternating) around `leaf`, built as bytes."""
    opens = "".join('{"k":' if i % 2 else "[" for i in range(depth))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return opens.encode() + orjson.dumps(leaf) + closes.encode()


def shaped_docs(text: str) -> list[dict]:
    """One plausible request or response document per API, carrying `text` where the shape reads text."""
    model = "fuzz-model"
    return [
        {"model": model, "messages": [{"role": "user", "content": text}], "stream": True},
        {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
        {"model": model, "messages": [{"role": "assistant", "tool_calls": [
            {"function": {"name": "f", "arguments": {"a": [text, {"b": text}]}}}]}]},
        {"model": model, "max_tokens": 5, "system": text, "messages": [{"role": "user", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {"q": text}},
            {"type": "tool_result", "tool_use_id": "t", "content": text}]}]},
        {"model": model, "instructions": text, "input": [{"type": "message", "role": "user", "content": text},
                                                         {"type": "function_call_output", "output": text}]},
        {"model": model, "prompt": [text, text], "suffix": text},
        {"model": model, "input": text},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]},
        {"message": {"role": "assistant", "content": text}, "done": True, "eval_count": 3},
        {"content": [{"type": "text", "text": text}], "usage": {"input_tokens": 1}},
        {"output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]},
    ]


@st.composite
def shaped_bodies(draw) -> bytes:
    text = draw(st.sampled_from(["hello", f"key {SECRET} end", f"{AWS_KEY} and {EMAIL}"]))
    return orjson.dumps(draw(st.sampled_from(shaped_docs(text))))  # serialised: no sharing


@st.composite
def deep_bodies(draw) -> bytes:
    """Nested around orjson's limits: it reads 1024 levels, writes only 254, and refuses deeper input."""
    depth = draw(st.sampled_from([3, 100, 253, 254, 255, 256, 600, 1022, 1023, 1024, 1025, 4000]))
    leaf = draw(st.sampled_from([f"key {SECRET}", EMAIL, 1]))
    where = draw(st.sampled_from(["x_vendor", "messages", "arguments", "input", "bare"]))
    nested = _nested(depth, leaf)
    if where == "bare":
        return nested
    if where == "messages":  # a content-part list nested inside the message list
        return b'{"model":"m","messages":[{"role":"user","content":' + nested + b'}]}'
    if where == "arguments":  # Ollama tool-call arguments: every string inside is a segment
        return (b'{"model":"m","messages":[{"role":"assistant","content":"' + SECRET.encode() +
                b'","tool_calls":[{"function":{"name":"f","arguments":{"a":' + nested + b'}}}]}]}')
    if where == "input":  # Anthropic tool_use input, also walked to every string
        return (b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use",'
                b'"input":{"a":' + nested + b'}}, {"type":"text","text":"' + SECRET.encode() + b'"}]}]}')
    return (b'{"model":"m","messages":[{"role":"user","content":"k ' + SECRET.encode() + b'"}],"x_vendor":' +
            nested + b"}")


@st.composite
def invalid_utf8_bodies(draw) -> bytes:
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80", b"\\ud800"]))
    return (b'{"model":"m","messages":[{"role":"user","content":"a ' + junk + b" " + SECRET.encode() +
            b'"}]}')


@st.composite
def stream_bodies(draw) -> bytes:
    """A piece of an SSE or NDJSON stream: text deltas in several APIs' formats, a planted secret split over
    events, junk records (comments, keep-alives, non-JSON, unhashable indexes, invalid UTF-8) in between,
    cut at an arbitrary byte."""
    text = draw(st.sampled_from([f"here {SECRET} and {EMAIL} ok", f"{AWS_KEY}", "plain text"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    kind = draw(st.sampled_from(["openai", "ollama", "anthropic", "responses", "completions"]))
    events = []
    for i, piece in enumerate(pieces):
        events.append({
            "openai": {"choices": [{"index": 0, "delta": {"content": piece}}]},
            "ollama": {"message": {"role": "assistant", "content": piece}, "done": False, "response": piece},
            "anthropic": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            "responses": {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
                          "delta": piece},
            "completions": {"choices": [{"index": 0, "text": piece}]},
        }[kind])
        if draw(st.booleans()):
            events.append(draw(st.sampled_from([
                {"choices": [{"index": [0], "finish_reason": "stop", "delta": {}}]},
                {"choices": [{"index": {"a": 1}, "finish_reason": "stop", "text": "x"}]},
                {"choices": "nope"}, {"type": "content_block_stop", "index": [1]}, {"done": True},
                {"type": "response.completed", "response": {"output": 5}}, [], 5,
                {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
            ])))
    ndjson = draw(st.booleans())
    records = []
    for event in events:
        data = orjson.dumps(event)
        records.append(data + b"\n" if ndjson else b"data: " + data + b"\n\n")
        if draw(st.integers(0, 5)) == 0:
            records.append(draw(st.sampled_from([b": keep-alive\n\n", b"\n", b"data: [DONE]\n\n", b"data: {tru",
                                                 b"data: \xff\xfe\n\n", b"event: ping\ndata: {}\n\n",
                                                 b"\r\n\r\n", SECRET.encode()[:7]])))
    body = b"".join(records)
    return body[draw(st.integers(0, len(body))):] if draw(st.integers(0, 4)) == 0 else body


bodies = st.one_of(
    shaped_bodies(),
    json_values.map(orjson.dumps),
    st.binary(max_size=200),
    deep_bodies(),
    invalid_utf8_bodies(),
    stream_bodies(),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'{"messages": [', gzip.compress(b'{"messages": []}'),
                     b'{"model":"m","messages":[' + b'{"role":"user","content":"a"},' * 2000 + b"{}]}",
                     b'{"model":"m","prompt":"' + b"x" * 300_000 + b'"}']),
)


# ---- strategies: ext_proc messages --------------------------------------------------------------------------
header_values = st.one_of(st.text(max_size=30), st.sampled_from(["gzip", "identity", "br, gzip", "", "x" * 100_000,
                                                                 f"Bearer {SECRET}", "application/json"]))


@st.composite
def request_headers_msgs(draw) -> pb.ProcessingRequest:
    path = draw(st.one_of(st.sampled_from(SHAPE_PATHS + OTHER_PATHS), st.text(max_size=20)))
    if draw(st.booleans()):
        path += f"?api_key={SECRET}"  # the query string never reaches a log record
    # :method, the path without its query, x-request-id and the body's `model` are logged as sent (metadata, see
    # SECURITY.md), so no secret is planted in them.
    pairs = {":method": draw(st.sampled_from(["POST", "POST", "GET", "PUT", "", "post"])), ":path": path,
             ":authority": "gw", "x-request-id": "fuzz"}
    extra_names = st.sampled_from(["content-type", "content-encoding", "authorization", "x-fuzz", "x-big",
                                   "accept-encoding", "x-tenant"])
    pairs.update(draw(st.dictionaries(extra_names, header_values, max_size=4)))
    if draw(st.booleans()):
        pairs["x-fuzz"] = "deny"
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=_header_map(pairs),
                                                               end_of_stream=draw(st.booleans())))


@st.composite
def response_headers_msgs(draw) -> pb.ProcessingRequest:
    pairs = {":status": draw(st.sampled_from(["200", "200", "201", "204", "404", "500", "abc", "", "99999999999"]))}
    pairs["content-type"] = draw(st.sampled_from(["text/event-stream", "application/x-ndjson", "application/json",
                                                  "application/problem+json", "text/plain", "",
                                                  "text/event-stream; charset=utf-8", "APPLICATION/JSON"]))
    pairs.update(draw(st.dictionaries(st.sampled_from(["content-encoding", "content-length", "x-big"]),
                                      header_values, max_size=2)))
    return pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=_header_map(pairs),
                                                                end_of_stream=draw(st.booleans())))


def _header_map(pairs: dict[str, str]) -> pb.HeaderMap:
    out = header_map(pairs)
    for header in out.headers:  # Envoy sends raw_value; an old peer might send value: both must work
        if header.key == "x-big":
            header.value, header.raw_value = header.raw_value.decode("utf-8", "replace"), b""
    return out


def body_msgs(direction: str):
    return st.builds(lambda body, eos: pb.ProcessingRequest(**{direction: pb.HttpBody(body=body, end_of_stream=eos)}),
                     bodies, st.booleans())


def trailer_msgs(direction: str):
    return st.just(pb.ProcessingRequest(**{direction: pb.HttpTrailers(trailers=header_map({"x-t": SECRET}))}))


any_msg = st.one_of(request_headers_msgs(), body_msgs("request_body"), response_headers_msgs(),
                    body_msgs("response_body"), trailer_msgs("request_trailers"), trailer_msgs("response_trailers"),
                    st.just(pb.ProcessingRequest()))


@st.composite
def sequences(draw) -> list[pb.ProcessingRequest]:
    """Mostly the real order, perturbed (dropped, duplicated, swapped, extra messages); sometimes random."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(any_msg, max_size=10))
    msgs = [draw(request_headers_msgs()), draw(body_msgs("request_body")), draw(response_headers_msgs())]
    msgs += draw(st.lists(body_msgs("response_body"), min_size=1, max_size=5))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "dup", "swap", "insert"]))
        i = draw(st.integers(0, max(0, len(msgs) - 1)))
        if op == "drop" and msgs:
            del msgs[i]
        elif op == "dup" and msgs:
            msgs.insert(i, msgs[i])
        elif op == "swap" and len(msgs) > 1:
            j = min(i + 1, len(msgs) - 1)
            msgs[i], msgs[j] = msgs[j], msgs[i]
        else:
            msgs.insert(i, draw(any_msg))
    return msgs


# ---- the properties ------------------------------------------------------------------------------------------
def _secret_free(blob: bytes | str, where: str) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    for secret in PLANTED:
        assert secret not in text, f"planted secret reached {where}"


def _check_reply(kind: str | None, reply: pb.ProcessingResponse) -> None:
    assert isinstance(reply, pb.ProcessingResponse)
    answered = reply.WhichOneof("response")
    assert answered is not None, f"{kind} got an empty ProcessingResponse"
    assert answered in (kind, "immediate_response"), f"{kind} answered with {answered}"
    if answered == "immediate_response":
        immediate = reply.immediate_response
        assert 400 <= immediate.status.code <= 599
        _secret_free(immediate.body, "an error body")
        orjson.loads(immediate.body)  # every error is a JSON document in the API's format
        for option in immediate.headers.set_headers:
            _secret_free(option.header.raw_value, "an error header")


@pytest.mark.parametrize("policy_index", range(len(POLICIES)))
@FUZZ
@given(msgs=sequences())
def test_any_message_sequence_gets_one_matching_reply_each_and_one_clean_audit_record(policy_index, msgs):
    session = Session(POLICIES[policy_index])
    with structlog.testing.capture_logs() as logs:
        for msg in msgs:
            _check_reply(msg.WhichOneof("request"), session.handle(msg))
        session.finish()
    records = [entry for entry in logs if entry["event"] == "exchange_completed"]
    assert len(records) == 1
    assert records[0]["decision"] in ("allow", "pass", "deny", "redact", "annotate", "reject", "error")
    for entry in logs:
        _secret_free(repr(entry), f"log record {entry['event']}")
    with structlog.testing.capture_logs() as again:
        session.finish()
    assert again == []


@FUZZ
@given(msgs=st.lists(any_msg, max_size=6), split=st.integers(0, 6))
def test_finish_at_any_point_writes_one_record(msgs, split):
    """Envoy may end the gRPC stream after any message (client gone, upstream reset, immediate reply)."""
    session = Session(POLICIES[0])
    for msg in msgs[:split]:
        session.handle(msg)
    with structlog.testing.capture_logs() as logs:
        session.finish()
        session.finish()
    assert [entry["event"] for entry in logs if entry["event"] == "exchange_completed"] == ["exchange_completed"]


# One streamed event per API carrying `piece` in a field that API's shape reads (an unread field would be
# forwarded unexamined: see SECURITY.md), and the request that makes the session expect it.
STREAM_EVENTS = {
    "/v1/chat/completions": lambda p: {"choices": [{"index": 0, "delta": {"content": p}}]},
    "/v1/completions": lambda p: {"choices": [{"index": 0, "text": p}]},
    "/api/chat": lambda p: {"message": {"role": "assistant", "content": p}, "done": False},
    "/api/generate": lambda p: {"response": p, "done": False},
    "/v1/messages": lambda p: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
    "/v1/responses": lambda p: {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
                                "delta": p},
}
STREAM_REQUESTS = {
    "/v1/chat/completions": {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "m", "stream": True, "prompt": "hi"},
    "/api/chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "/api/generate": {"model": "m", "prompt": "hi"},
    "/v1/messages": {"model": "m", "max_tokens": 9, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "m", "stream": True, "input": "hi"},
}
JUNK_RECORDS = [b": keep-alive\n\n", b"\n", b"event: ping\ndata: {}\n\n", b"data: \xff\xfe\n\n", b"data: 5\n\n",
                b'data: {"choices": "nope"}\n\n', b'{"done": "maybe"}\n', b"\r\n"]


@FUZZ
@given(path=st.sampled_from(sorted(STREAM_EVENTS)), data=st.data(),
       filler=st.lists(st.text(st.sampled_from(list("ab .,\n\"\\é日🎉")), max_size=12), min_size=1, max_size=5))
def test_planted_secrets_never_reach_the_client_however_the_stream_is_cut(path, data, filler):
    """The real message order, any chunking, junk records in between: what the client receives (the original
    chunk, or our replacement for it) never contains a planted secret, and the stream is never ended early."""
    pieces = list(filler)
    for secret in data.draw(st.lists(st.sampled_from(PLANTED), min_size=1, max_size=3)):
        pieces.insert(data.draw(st.integers(0, len(pieces))), f" {secret} ")
    full = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(full) - 1), max_size=8)))
    ndjson = path.startswith("/api/")
    records = []
    for a, b in zip([0, *cuts], [*cuts, len(full)]):
        if a < b:
            event = orjson.dumps(STREAM_EVENTS[path](full[a:b]))
            records.append(event + b"\n" if ndjson else b"data: " + event + b"\n\n")
        if data.draw(st.integers(0, 4)) == 0:
            records.append(data.draw(st.sampled_from(JUNK_RECORDS)))
    stream = b"".join(records)
    points = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=10))))
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)]) if stream[a:b]]
    session = Session(POLICIES[0])
    session.handle(request_headers(path=path))
    reply = session.handle(request_body(STREAM_REQUESTS[path]))
    assert reply.WhichOneof("response") == "request_body"
    content_type = "application/x-ndjson" if ndjson else "text/event-stream"
    assert session.handle(response_headers(content_type)).mode_override.response_body_mode == 1  # STREAMED
    client = b""
    with structlog.testing.capture_logs() as logs:
        for i, chunk in enumerate([*chunks, b""]):
            mutation = session.handle(response_body(chunk, i == len(chunks))).response_body.response.body_mutation
            client += chunk if mutation.WhichOneof("mutation") is None else mutation.body
        session.finish()
    _secret_free(client, "the client")
    for entry in logs:
        _secret_free(repr(entry), f"log record {entry['event']}")
    assert b"policy_error" not in client and b"stream_hold_limit" not in client


# ---- shape request parsers: random JSON in, MalformedRequest is the only exception out -----------------------
SHAPES = shapes.all_shapes()


@pytest.mark.parametrize("name", sorted(SHAPES))
@FUZZ_HOOKS
@given(doc=st.one_of(json_values, st.sampled_from(shaped_docs(SECRET)).flatmap(
    lambda doc: st.builds(lambda key, value: {**copy.deepcopy(doc), key: value}, st.sampled_from(KEYS + ["model"]),
                          json_values))))
def test_parse_request_raises_only_malformed_request(name, doc):
    shape = SHAPES[name]
    try:
        parsed = shape.parse_request(doc)
    except MalformedRequest as exc:
        _secret_free(exc.message, "a MalformedRequest message")
        return
    for segment in parsed.segments:
        assert isinstance(segment.text, str) and isinstance(segment.role, str)
        shape.write_text(doc, segment.locator, "[X]")  # every locator can be written back
    orjson.dumps(doc)


@pytest.mark.parametrize("name", sorted(SHAPES))
@FUZZ_HOOKS
@given(payload=json_values, keys=st.lists(st.one_of(st.integers(-1, 3), st.sampled_from(["content", "thinking"]),
                                                    st.tuples(st.integers(0, 2), st.just("content"))), max_size=4))
def test_stream_event_hooks_never_raise(name, payload, keys):
    shape = SHAPES[name]
    for delta in shape.stream_deltas(payload):
        hash(delta.key)
        assert isinstance(delta.text, str)
    shape.closed_keys(payload, keys)
    shape.usage_of(payload)
    shape.is_usage_only(payload)


def test_regression_closed_keys_with_unhashable_index():
    """An event whose choice `index` is not an integer (here a list) must not raise from `closed_keys`: the
    choice is taken at its position, as the text deltas are."""
    event = {"choices": [{"index": [0], "finish_reason": "stop"}]}
    assert SHAPES["openai_chat"].closed_keys(event, [(0, "content"), (1, "content")]) == [(0, "content")]
    assert SHAPES["openai_completions"].closed_keys(event, [0, 1]) == [0]


# ---- regressions found by the fuzzer -------------------------------------------------------------------------
REDACT = POLICIES[0]


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, MAX_DEPTH, 254, 1022])  # +1 for the outer object
def test_regression_deep_request_gets_400_not_503(depth):
    """Documents deeper than canonical_json.MAX_DEPTH are refused as ambiguous before anything else (orjson
    reads 1024 levels but writes only 254, so a deep redacted document could not be re-serialised either)."""
    session = Session(REDACT)
    session.handle(request_headers())
    body = (b'{"model":"m","messages":[{"role":"user","content":"k ' + SECRET.encode() + b'"}],"x_vendor":' +
            _nested(depth, 1) + b"}")
    with structlog.testing.capture_logs() as logs:
        reply = session.handle(request_body(raw=body))
    if depth < MAX_DEPTH:
        assert b"[TEST_SECRET]" in reply.request_body.response.body_mutation.body
    else:
        assert reply.immediate_response.status.code == 400
        error = orjson.loads(reply.immediate_response.body)["error"]
        assert error["code"] == "invalid_request" and "nested" in error["message"]
    assert not [entry for entry in logs if entry["event"] == "message_failed"]


def test_regression_a_stream_ended_by_an_internal_error_stays_ended(monkeypatch):
    """An unexpected exception inside the stream scanner (here: a shape hook that raises on one event) ends
    the stream with the error event; text held before it and records after it must not follow."""
    from extproc.shapes.openai_chat import OpenAIChat

    original = OpenAIChat.stream_deltas

    def explode_on_list_index(self, payload):
        if any(isinstance(c.get("index"), list) for c in payload.get("choices", [])):
            raise TypeError("unhashable index")
        return original(self, payload)

    monkeypatch.setattr(OpenAIChat, "stream_deltas", explode_on_list_index)
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers("text/event-stream"))
    first = b'data: {"choices":[{"index":0,"delta":{"content":"held tail sk-"}}]}\n\n'
    bad = b'data: {"choices":[{"index":[0],"finish_reason":"stop","delta":{}}]}\n\n'
    after = b'data: {"choices":[{"index":0,"delta":{"content":"after the end"}}]}\n\n'
    sent = []
    with structlog.testing.capture_logs():
        for chunk, eos in ((first, False), (bad, False), (after, False), (b"", True)):
            mutation = session.handle(response_body(chunk, eos)).response_body.response.body_mutation
            sent.append(chunk if mutation.WhichOneof("mutation") is None else mutation.body)
    out = b"".join(sent)
    assert b'"code":"policy_error"' in out
    assert out.endswith(b"\n\n") and out.count(b"data: ") == 1  # the error event and nothing else
    assert b"held tail" not in out and b"after the end" not in out


def _record(session: Session) -> dict:
    with structlog.testing.capture_logs() as logs:
        session.finish()
    [record] = [entry for entry in logs if entry["event"] == "exchange_completed"]
    return record


def test_regression_an_exchange_cut_before_its_end_is_marked_incomplete():
    """Found with the fault tests: a stream Envoy abandoned before the first message, or a response cut by an
    upstream reset, was recorded as a plain `allow`."""
    assert _record(Session(REDACT))["incomplete"] is True  # no message at all
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers("text/event-stream"))
    session.handle(response_body(b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n', False))
    assert _record(session)["incomplete"] is True  # the end of the response never came
    session = Session(REDACT)
    session.handle(request_headers())
    session.handle(request_body({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers("application/json"))
    session.handle(response_body(b'{"choices": []}', True))
    assert "incomplete" not in _record(session)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip", " GZIP "])
def test_regression_compressed_request_bodies_are_refused_at_the_headers_with_415(encoding):
    reply = Session(REDACT).handle(request_headers(extra={"content-encoding": encoding}))
    assert reply.immediate_response.status.code == 415
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "unsupported_content_encoding"
    identity = Session(REDACT).handle(request_headers(extra={"content-encoding": "identity"}))
    assert identity.WhichOneof("response") == "request_headers"

"""Regression (found by the soak run, bench.soak): `max_stream_held_bytes` bounds what a stream still holds
after each chunk's safe text went out, not the size of one chunk. A clean stream whose records arrive in one
chunk larger than the limit (Envoy delivers a back-to-back upstream burst that way) used to end with
`stream_hold_limit`; a stream that really holds more than the limit still ends with it."""

from __future__ import annotations

import pytest
from policies import policy, regex_rule
from sessions import chat, request_body, request_headers, response_body, response_headers
from sse import openai_errors, openai_stream, openai_text

from extproc.session import Session

SECRET = "sk-" + "Zq8Wm3Xv7Lp2Nr5Tb9Yc4Hd"


def session(on_limit: str = "fail_closed") -> Session:
    settings = f"settings: {{max_stream_held_bytes: 4096, on_stream_limit: {on_limit}}}\n"
    s = Session(policy("version: 1\n" + settings + "rules:" + regex_rule("redact-out", "redact", "response")))
    s.handle(request_headers())
    s.handle(request_body(chat("hi", stream=True)))
    s.handle(response_headers("text/event-stream"))
    return s


def deliver(s: Session, chunks: list[bytes]) -> bytes:
    """What the client receives: a reply without a body mutation lets the chunk through unchanged."""
    out = []
    for i, chunk in enumerate(chunks):
        mutation = s.handle(response_body(chunk, i == len(chunks) - 1)).response_body.response.body_mutation
        out.append(mutation.body if mutation.WhichOneof("mutation") == "body" else b"" if mutation.clear_body else chunk)
    return b"".join(out)


def test_a_burst_larger_than_the_hold_limit_passes_intact_and_redacted():
    words = [f"word{i} " for i in range(300)]
    stream = openai_stream([*words[:150], "key ", SECRET[:10], SECRET[10:], " end ", *words[150:]])
    assert len(stream) > 4 * 4096
    out = deliver(session(), [stream, b""])
    assert openai_errors(out) == []
    text = openai_text(out)
    assert SECRET not in text and text.startswith("word0 ") and text.endswith("word299 ")
    assert "key [" in text and "] end" in text


@pytest.mark.parametrize("on_limit, error_expected", [("fail_closed", True), ("fail_open", False)])
def test_a_stream_that_really_holds_more_than_the_limit_still_hits_it(on_limit, error_expected):
    first = b'data: {"choices":[{"index":0,"delta":{"content":"hello "}}]}\n\n'
    unterminated = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 5000  # no record end yet
    out = deliver(session(on_limit), [first, unterminated, b'"}}]}\n\n'])
    codes = [e.get("code") for e in openai_errors(out)]
    assert codes == (["stream_hold_limit"] if error_expected else [])
    if not error_expected:
        assert openai_text(out) == "hello " + "x" * 5000

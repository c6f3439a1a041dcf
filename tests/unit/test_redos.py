"""ReDoS: user patterns run on RE2, so the classic catastrophic shapes finish in linear time on large inputs
(in a buffered request, a buffered response and a stream), and patterns RE2 cannot run in linear time
(backreferences, lookaround, atomic groups, possessive quantifiers, huge counted repetitions) are rejected
when the policy is loaded, with the rule, the pattern and RE2's reason in the error."""

from __future__ import annotations

import json
import re
import time

import orjson
import pytest
from policies import policy
from sessions import request_body, request_headers, response_body, response_headers

from extproc.policy.load import PolicyError
from extproc.session import Session

# CPU time of this thread, so other load on the machine does not count. Generous: RE2 does each of these in
# well under 0.3 s; a backtracking engine would not finish `(a+)+$` on 40 characters within a minute.
BUDGET_SECONDS = 2.0
SIZE = 100_000


def regex_policy(pattern: str, *, direction: str = "both", action: str = "redact", max_length: int = 256,
                 ignore_case: bool = False) -> object:
    spec = json.dumps({"label": "user_pattern", "pattern": pattern, "max_length": max_length,
                       "ignore_case": ignore_case})  # JSON is YAML: no quoting surprises for backslashes
    return policy(f"""version: 1
rules:
  - id: user-pattern
    detector: regex
    direction: {direction}
    action: {action}
    params: {{patterns: [{spec}]}}
""")


CATASTROPHIC = [
    ("(a+)+$", "a" * SIZE + "!"),
    ("(a|aa)*b", "a" * SIZE),
    ("(.*a){20}", "a" * SIZE),
    ("(.*a){20}", "ab" * (SIZE // 2)),
    ("(a*)*$", "a" * SIZE + "!"),
    ("(x+x+)+y", "x" * SIZE),
    (r"(\w+\s?)+$", "word " * (SIZE // 5) + "!"),
    ("^(([a-z])+.)+[A-Z]([a-z])+$", "a" * SIZE),
    (r"^(\d+)*[a-z]$", "1" * SIZE + "!"),
    ("(?i)(A|a)*B", "a" * SIZE),
]


@pytest.mark.parametrize("pattern,text", CATASTROPHIC, ids=[f"{p}-{len(t)}" for p, t in CATASTROPHIC])
def test_catastrophic_pattern_on_100kb_is_fast_in_the_detector(pattern, text):
    detector = regex_policy(pattern).rules[0].detector
    started = time.thread_time()
    findings = detector.find(text)
    elapsed = time.thread_time() - started
    assert elapsed < BUDGET_SECONDS, f"{pattern!r} took {elapsed:.2f}s on {len(text)} characters"
    assert all(f.end - f.start <= 256 for f in findings)  # max_length bounds every match


@pytest.mark.parametrize("pattern,text", CATASTROPHIC[:4], ids=[p for p, _ in CATASTROPHIC[:4]])
def test_catastrophic_pattern_in_a_100kb_request_is_fast_through_a_session(pattern, text):
    session = Session(regex_policy(pattern, direction="request", action="deny"))
    session.handle(request_headers())
    started = time.thread_time()
    reply = session.handle(request_body({"model": "m", "messages": [{"role": "user", "content": text}]}))
    assert time.thread_time() - started < BUDGET_SECONDS
    kind = reply.WhichOneof("response")
    assert kind in ("request_body", "immediate_response")
    if kind == "immediate_response":  # a deny is fine (`(.*a){20}` matches), a 5xx is not
        assert reply.immediate_response.status.code == 403


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*b", "(.*a){20}"])
def test_catastrophic_pattern_on_a_100kb_stream_is_fast(pattern):
    """Streams rescan their held tail on every chunk: bounded by the hold (max_length), still linear."""
    session = Session(regex_policy(pattern, direction="response", max_length=256))
    session.handle(request_headers())
    session.handle(request_body({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers("text/event-stream"))
    events = [b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": "a" * 1000}}]}) + b"\n\n"
              for _ in range(SIZE // 1000)]
    started = time.thread_time()
    for event in events:
        assert session.handle(response_body(event, False)).WhichOneof("response") == "response_body"
    session.handle(response_body(b"", True))
    assert time.thread_time() - started < 2 * BUDGET_SECONDS


def test_catastrophic_pattern_on_a_100kb_buffered_response_is_fast():
    session = Session(regex_policy("(a|aa)*b", direction="response"))
    session.handle(request_headers())
    session.handle(request_body({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    session.handle(response_headers("application/json"))
    doc = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a" * SIZE}}]}
    started = time.thread_time()
    reply = session.handle(response_body(orjson.dumps(doc), True))
    assert time.thread_time() - started < BUDGET_SECONDS
    assert reply.WhichOneof("response") == "response_body"


REJECTED = [
    (r"(a)\1", "backreference"),
    (r"(?P<x>a)(?P=x)", "named backreference"),
    ("(?=a)b", "lookahead"),
    ("(?!a)b", "negative lookahead"),
    ("(?<=a)b", "lookbehind"),
    ("(?<!a)b", "negative lookbehind"),
    ("(?>a+)b", "atomic group"),
    ("a++b", "possessive quantifier"),
    ("a{1001}", "counted repetition over RE2's limit"),
    ("(.*){1,32000}[bc]", "counted repetition over RE2's limit"),
    ("((a{1,100}){1,100}){1,100}", "nested repetition too large"),
    ("(", "unbalanced parenthesis"),
    ("[z-a]", "bad range"),
]


@pytest.mark.parametrize("pattern,why", REJECTED, ids=[w.replace(" ", "-") for _, w in REJECTED])
def test_patterns_re2_cannot_run_are_rejected_with_a_clear_policy_error(pattern, why):
    with pytest.raises(PolicyError) as caught:
        regex_policy(pattern)
    message = str(caught.value)
    assert "line " in message and "patterns.0.pattern" in message  # where in the file
    assert repr(pattern) in message  # which pattern
    assert "not valid RE2 (linear-time) syntax" in message  # why, in words a policy author can act on
    assert re.search(r"syntax: \S", message)  # followed by RE2's own reason


def test_rejected_pattern_in_a_reload_keeps_the_old_policy(tmp_path):
    """The same error path the hot reload takes: an invalid pattern never replaces a running policy."""
    import asyncio

    from extproc.policy.reload import PolicyHolder

    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nallow_empty: true\nrules: []\n")
    holder = PolicyHolder(str(path))
    before = holder.current
    path.write_text('version: 1\nrules:\n  - id: r\n    detector: regex\n'
                    '    params: {patterns: [{label: x, pattern: "(a)\\\\1"}]}\n')
    assert asyncio.run(holder.reload_if_changed()) is False
    assert holder.current is before


PII_DETECTORS = ["phone", "email", "payment_card", "iban", "national_id", "ip_address", "us_ssn", "unsafe_links"]
HOSTILE_PROMPTS = {
    "digit groups": "123 456 7890 ",  # the incident: ~33 µs/char in `phone`, seconds per prompt
    "random numbers": "+49 30 1234567 0301 234 5678 (425) 882-9090 4111-1111-1111-1111 ",
    "markdown tails": "![x](https://evil.example/",
}


@pytest.mark.parametrize("unit", HOSTILE_PROMPTS.values(), ids=HOSTILE_PROMPTS)
def test_a_255kb_hostile_prompt_through_every_pii_detector_is_fast(unit):
    rules = "".join(f"  - {{id: {name}, detector: {name}, direction: request, action: redact}}\n"
                    for name in PII_DETECTORS)
    session = Session(policy("version: 1\nrules:\n" + rules))
    session.handle(request_headers())
    content = unit * (255_000 // len(unit))
    started = time.thread_time()
    reply = session.handle(request_body({"model": "m", "messages": [{"role": "user", "content": content}]}))
    elapsed = time.thread_time() - started
    assert reply.WhichOneof("response") == "request_body"  # redacted, not refused or failed
    assert elapsed < BUDGET_SECONDS, f"{elapsed:.2f}s of CPU for {len(content)} characters"

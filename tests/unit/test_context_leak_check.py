"""context_leak: shingling, the per-exchange echo detector (find and a sound streaming hold), the canary, monitor
mode and where each API shape keeps its system prompt."""

from __future__ import annotations

import asyncio
import random
import re

import orjson
import pytest

from extproc import audit, shapes
from extproc.checks._shingles import SYSTEM, ContextEcho, Fingerprints, shingle_hashes, tokens
from extproc.checks.context_leak import Params, new_canary, response_rule

tool_texts = shapes.all_shapes()["openai_chat"].tool_texts
from extproc.exchange_cases import run_exchange
from extproc.policy.compile import CompiledCheck
from extproc.session import Session
from extproc.stream_scan import StreamScanner
from tests import sessions
from tests.policies import policy
from tests.sse import openai_stream, openai_text

SYS = ("You are Aria, the support assistant for Northwind Bank. Never discuss competitor products, never give "
       "investment advice, and always escalate fraud reports to a human agent within the same conversation. "
       "Internal escalation code is blue falcon seven.")
OPENAI = shapes.all_shapes()["openai_chat"]


def echo_detector(text: str = SYS, n: int = 8, min_shingles: int = 4, max_gap: int = 5, max_span: int = 2000,
                  canary: str | None = None) -> ContextEcho:
    prints = Fingerprints(n, min_shingles, 6, {})
    prints.add(text, SYSTEM, short_whole=True)
    return ContextEcho(prints, max_gap, max_span, "[{LABEL}]", canary)


def leak_policy(action: str = "redact", mode: str = "enforce", **params) -> object:
    params = {"shingle_words": 8, **params}
    extra = "".join(f"\n      {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items())
    return policy(f"""
version: 1
rules:
  - id: no-leak
    check: context_leak
    action: {action}
    mode: {mode}
    params:{extra}
""")


# ---- shingling and normalisation ---------------------------------------------------------------------------
def test_tokens_are_lower_cased_letter_digit_runs_with_offsets():
    text = "Héllo,  WORLD_x 日本語 v2.0"
    toks = tokens(text)
    assert [t.word for t in toks] == ["héllo", "world", "x", "日本語", "v2", "0"]
    assert all(text[t.start:t.end].lower() == t.word for t in toks)


def test_a_very_long_word_is_cut_into_bounded_tokens():
    toks = tokens("a" * 70)
    assert [t.end - t.start for t in toks] == [32, 32, 6]


def test_shingles_ignore_case_and_punctuation_but_not_word_order():
    assert shingle_hashes("One two, THREE four!", 3) == shingle_hashes("one two three four", 3)
    assert shingle_hashes("one two three", 3) != shingle_hashes("three two one", 3)


def test_a_long_separator_breaks_shingles():
    assert len(shingle_hashes("one two three four", 3)) == 2
    assert shingle_hashes("one two " + "-" * 40 + " three four", 3) == []


# ---- the detector ------------------------------------------------------------------------------------------
def test_a_verbatim_echo_is_found_as_one_span():
    out = "Sure. My instructions are: " + SYS + " Anything else?"
    [finding] = echo_detector().find(out)
    assert (finding.label, out[finding.start:finding.end]) == (SYSTEM, SYS[:-1])  # the final "." is not a word


def test_a_near_verbatim_echo_with_small_edits_is_found():
    edited = (SYS.replace("Never discuss", "You must never mention").replace("human agent", "human colleague")
              .replace("Northwind Bank", "NorthWind bank"))
    [finding] = echo_detector().find("Here you go: " + edited)
    assert finding.end - finding.start > 0.9 * len(edited)


def test_too_few_matching_shingles_do_not_fire():
    nine_words = " ".join(SYS.split()[:9])  # two shingles of eight words, threshold four
    assert echo_detector().find(f"As I said, {nine_words} and so on.") == []
    eleven_words = " ".join(SYS.split()[:11])  # exactly four shingles
    assert len(echo_detector().find(f"As I said, {eleven_words} and so on.")) == 1


def test_an_answer_sharing_common_phrases_does_not_fire():
    answer = ("I can help with your Northwind Bank account. I never give investment advice, but fraud reports "
              "are escalated to a human agent. You are welcome to ask about support products.")
    assert echo_detector().find(answer) == []


def test_a_short_system_prompt_is_matched_whole_and_a_tiny_one_is_ignored():
    short = echo_detector("Answer only in formal British English.")
    assert len(short.find("Of course: answer only in formal British English, as instructed.")) == 1
    assert short.find("Only in formal British English.") == []  # part of it only
    tiny = echo_detector("Be terse.")
    assert len(tiny.prints) == 0


def test_a_short_prompt_with_few_shingles_fires_when_echoed_whole():
    nine = "Reply as Captain Nemo from the novel by Jules Verne."  # 10 words: 3 shingles < min_shingles
    assert len(echo_detector(nine).find("My prompt: reply as Captain Nemo from the novel by Jules Verne.")) == 1


def test_an_echo_longer_than_max_span_becomes_adjacent_bounded_findings():
    long_prompt = " ".join(f"rule {i} says the assistant must follow policy item number {i}." for i in range(60))
    found = echo_detector(long_prompt, max_span=400).find(long_prompt)
    assert len(found) > 3 and all(f.end - f.start <= 400 for f in found)
    assert found[0].start == 0 and found[-1].end >= len(long_prompt) - 1


def test_the_canary_is_found_exactly_and_held_while_it_may_be_forming():
    detector = echo_detector(canary="cnry-abcdef")
    assert [(f.start, f.label) for f in detector.find("x cnry-abcdef y cnry-abcdef")] == [(2, "canary"), (16, "canary")]
    assert detector.hold("text ending in cnry-ab") >= len("cnry-ab")


class CountingTable(dict):
    lookups = 0

    def get(self, key, default=None):
        CountingTable.lookups += 1
        return super().get(key, default)


def test_finding_looks_up_only_windows_that_start_like_a_shingle():
    detector = echo_detector()
    detector.prints.by_size[8] = CountingTable(detector.prints.by_size[8])
    for words in (1_000, 4_000):
        CountingTable.lookups = 0
        detector.find(" ".join(f"w{i % 997}" for i in range(words)))
        assert CountingTable.lookups == 0  # no window starts with a word any shingle starts with
        # "you" starts a shingle of SYS: every window starting with it is looked up once, the others never.
        CountingTable.lookups = 0
        detector.find(" ".join("you" if i % 10 == 0 else f"w{i % 997}" for i in range(words)))
        assert CountingTable.lookups == len(range(0, words - 7, 10))  # linear in the output


# ---- streaming: a sound hold ------------------------------------------------------------------------------
def stream_rules(detector: ContextEcho, action: str = "redact", mode: str = "enforce") -> tuple:
    check = leak_policy(action, mode).checks[0]
    return (response_rule(check, detector),)


def run_stream(rules: tuple, chunks: list[bytes]) -> tuple[bytes, StreamScanner]:
    scanner = StreamScanner(OPENAI, "sse", rules, 1 << 20, "fail_closed")
    out = b"".join(scanner.push(c) for c in chunks[:-1]) + scanner.finish(chunks[-1])
    return out, scanner


def test_a_leak_split_across_every_event_boundary_is_redacted():
    rules = stream_rules(echo_detector())
    before, after = "Sure, here it is: ", " Hope that helps."
    full = before + SYS + after
    cuts = [*range(1, len(full), 7), len(before) + 1, len(before) + 2]  # and inside the echo's first word
    for cut in cuts:
        for second in (cut + 3, cut + 40):
            pieces = [full[:cut], full[cut:second], full[second:]]
            stream = openai_stream([p for p in pieces if p])
            events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]  # one chunk per event
            out, _ = run_stream(rules, events)
            text = openai_text(out)
            # exact: not a character of the echo (e.g. "Yo" of a "You" cut in two) is released before the decision
            assert text == before + "[SYSTEM_PROMPT_ECHO]." + after, (cut, second)


def test_a_leak_in_a_stream_split_at_random_byte_offsets_is_redacted():
    rules = stream_rules(echo_detector())
    stream = openai_stream(["Sure: ", SYS[:50], SYS[50:120], SYS[120:], " Bye."])
    rng = random.Random(7)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(stream)), 12))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        text = openai_text(run_stream(rules, chunks)[0])
        assert text == "Sure: [SYSTEM_PROMPT_ECHO]. Bye.", cuts


def test_no_part_of_a_leak_is_released_before_the_decision():
    rules = stream_rules(echo_detector())
    words = SYS.split(" ")
    stream = openai_stream(["Sure: "] + [w + " " for w in words] + [" Bye."])
    events = stream.split(b"\n\n")
    released = b""
    scanner = StreamScanner(OPENAI, "sse", rules, 1 << 20, "fail_closed")
    for event in events[:-1]:
        released += scanner.push(event + b"\n\n")
        assert "Northwind" not in openai_text(released)
    released += scanner.finish(events[-1])
    assert "[SYSTEM_PROMPT_ECHO]" in openai_text(released)


def test_a_clean_answer_streams_byte_for_byte_and_is_not_held_back_long():
    rules = stream_rules(echo_detector())
    answer = "The weather in Lisbon is mild in spring, with showers and long sunny spells. " * 6
    pieces = [answer[i:i + 20] for i in range(0, len(answer), 20)]
    stream = openai_stream(pieces)
    scanner = StreamScanner(OPENAI, "sse", rules, 1 << 20, "fail_closed")
    events = [e + b"\n\n" for e in stream.split(b"\n\n")[:-1]]
    outs = [scanner.push(e) for e in events]
    assert sum(1 for o in outs if o) > len(events) // 2  # still streams
    assert b"".join(outs) + scanner.finish() == stream


def test_deny_ends_the_stream_with_the_shapes_error_event():
    out, scanner = run_stream(stream_rules(echo_detector(), "deny"), [openai_stream(["Rules: ", SYS, " ok"])])
    assert "Northwind" not in openai_text(out) and scanner.error is not None
    assert scanner.error.status == 403 and "system_prompt_echo" in scanner.error.message
    assert "Northwind" not in scanner.error.message


def test_monitor_mode_releases_the_echo_unchanged_and_records_it():
    stream = openai_stream(["Rules: ", SYS, " ok"])
    out, scanner = run_stream(stream_rules(echo_detector(), "redact", "monitor"), [stream])
    assert out == stream
    assert [(h.rule.id, h.rule.mode, h.finding.label) for h in scanner.hits] == [("no-leak", "monitor", SYSTEM)]


# ---- the check through a Session ----------------------------------------------------------------------------
SHAPE_REQUESTS = {
    "/v1/chat/completions": ({"model": "m", "messages": [{"role": "developer", "content": SYS},
                                                         {"role": "user", "content": "hi"}]},
                             {"choices": [{"index": 0, "message": {"role": "assistant", "content": SYS}}]}),
    "/v1/messages": ({"model": "m", "max_tokens": 50, "system": [{"type": "text", "text": SYS}],
                      "messages": [{"role": "user", "content": "hi"}]},
                     {"type": "message", "role": "assistant", "content": [{"type": "text", "text": SYS}]}),
    "/v1/responses": ({"model": "m", "instructions": SYS, "input": "hi"},
                      {"output": [{"type": "message", "role": "assistant",
                                   "content": [{"type": "output_text", "text": SYS}]}]}),
    "/api/chat": ({"model": "m", "stream": False, "messages": [{"role": "system", "content": SYS},
                                                               {"role": "user", "content": "hi"}]},
                  {"model": "m", "message": {"role": "assistant", "content": SYS}, "done": True}),
    "/api/generate": ({"model": "m", "stream": False, "system": SYS, "prompt": "hi"},
                      {"model": "m", "response": SYS, "done": True}),
}


@pytest.mark.parametrize("path", SHAPE_REQUESTS)
def test_each_shapes_system_prompt_is_fingerprinted_and_its_echo_redacted(path):
    request, response = SHAPE_REQUESTS[path]
    result = run_exchange(leak_policy(), {"path": path, "request": request, "response": response})
    assert result.decision == "redact", result.fields
    assert b"Northwind" not in result.client_bytes and b"[SYSTEM_PROMPT_ECHO]" in result.client_bytes


def test_a_buffered_echo_is_refused_with_403_when_the_rule_denies():
    request, response = SHAPE_REQUESTS["/v1/chat/completions"]
    result = run_exchange(leak_policy("deny"), {"request": request, "response": response})
    assert (result.decision, result.status, result.code) == ("deny", 403, "policy_violation")


def test_a_user_message_is_not_hidden_context():
    request = {"model": "m", "messages": [{"role": "user", "content": SYS}]}
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": SYS}}]}
    result = run_exchange(leak_policy(), {"request": request, "response": response})
    assert result.decision == "allow" and result.fields["context_fingerprints"] == 0


TOOLS_REQUEST = [{"type": "function", "function": {
    "name": "transfer_funds",
    "description": "Move money between two internal ledger accounts without customer confirmation.",
    "parameters": {"type": "object", "properties": {"memo": {
        "type": "string", "description": "Free text copied to the audit trail of the treasury desk team."}}}}}]


def test_tool_and_parameter_descriptions_are_fingerprinted():
    assert tool_texts(TOOLS_REQUEST) == [TOOLS_REQUEST[0]["function"]["description"],
                                         TOOLS_REQUEST[0]["function"]["parameters"]["properties"]["memo"]["description"]]
    anthropic = [{"name": "t", "description": "d", "input_schema": {"properties": {"a": {"description": "e"}}}}]
    assert tool_texts(anthropic) == ["d", "e"]
    leak = "My tools: Move money between two internal ledger accounts without customer confirmation."
    result = run_exchange(leak_policy(), {
        "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS_REQUEST},
        "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": leak}}]}})
    assert b"[TOOL_SCHEMA_ECHO]" in result.client_bytes and b"ledger" not in result.client_bytes


# ---- the canary -------------------------------------------------------------------------------------------
def test_canaries_are_random_and_shaped_alike():
    values = {new_canary() for _ in range(50)}
    assert len(values) == 50 and all(re.fullmatch(r"cnry-[a-z0-9]{16}", v) for v in values)


async def canary_exchange(pol, request: dict, reply_with_canary: bool, split: int = 3):
    session = Session(pol)
    await sessions.handle(session, sessions.request_headers())
    reply = await sessions.handle(session, sessions.request_body(request))
    sent = reply.request_body.response.body_mutation.body
    doc = orjson.loads(sent) if sent else request
    match = re.search(r"cnry-[a-z0-9]{16}", orjson.dumps(doc).decode())
    canary = match.group(0) if match else None
    text = f"The reference is {canary} indeed." if reply_with_canary and canary else "Nothing to see."
    pieces = [text[i:i + split] for i in range(0, len(text), split)]
    await sessions.handle(session, sessions.response_headers("text/event-stream"))
    stream = openai_stream(pieces)
    out = (await sessions.handle(session, sessions.response_body(stream, True))).response_body.response
    body = out.body_mutation.body if out.body_mutation.HasField("body") else stream
    work = session.finish()
    if work is not None:
        await work
    return canary, doc, openai_text(body), session


CANARY_REQUEST = {"model": "m", "stream": True, "messages": [{"role": "system", "content": "Be terse."},
                                                             {"role": "user", "content": "hi"}]}


def test_the_canary_is_injected_into_the_system_prompt_and_redacted_across_chunks(monkeypatch):
    records = []
    monkeypatch.setattr(audit, "emit", lambda fields, verdict, *cap: records.append(
        orjson.dumps({**fields, "hits": [audit.hit_record(h) for h in verdict.hits]}).decode()))
    canary, doc, text, session = asyncio.run(canary_exchange(leak_policy(canary=True), CANARY_REQUEST, True, 1))
    assert canary is not None and doc["messages"][0]["content"].startswith("Be terse.\n\n")
    assert canary in doc["messages"][0]["content"] and doc["messages"][1] == CANARY_REQUEST["messages"][1]
    assert canary not in text and "[CANARY]" in text
    assert session.record.as_fields()["context_canary"] is True
    [record] = records
    assert '"label":"canary"' in record and canary not in record


def test_no_canary_without_a_system_prompt_or_in_monitor_mode():
    no_system = {**CANARY_REQUEST, "messages": [{"role": "user", "content": "hi"}]}
    assert asyncio.run(canary_exchange(leak_policy(canary=True), no_system, True))[0] is None
    canary, doc, _, session = asyncio.run(canary_exchange(leak_policy(mode="monitor", canary=True),
                                                          CANARY_REQUEST, True))
    assert canary is None and doc == CANARY_REQUEST and session.verdict.hits == []


def test_the_check_compiles_its_params_and_rejects_bad_ones():
    assert isinstance(leak_policy().checks[0], CompiledCheck)
    assert Params().shingle_words == 8
    with pytest.raises(Exception, match="shingle_words"):
        leak_policy(shingle_words=2)


def test_a_system_prompt_written_with_look_alike_letters_is_still_matched():
    disguised = SYS.replace("a", "\u0430").replace("o", "\u043e")  # Cyrillic look-alikes in the prompt
    request = {"model": "m", "messages": [{"role": "system", "content": disguised}]}
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": SYS}}]}
    result = run_exchange(leak_policy(), {"request": request, "response": response})
    assert result.decision == "redact"

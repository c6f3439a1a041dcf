"""The hold-back stream scanner: split secrets are redacted, nothing lost or duplicated, clean events go out
byte-for-byte, streams still stream, denies end the stream with the shape's error event."""

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from policies import regex_rule, rules
from sse import openai_errors, openai_stream, openai_text

from extproc import shapes
from extproc.stream_scan import StreamScanner

SECRET = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2"
OPENAI = shapes.all_shapes()["openai_chat"]


def scanner(policy, max_held=65536, on_limit="fail_closed"):
    return StreamScanner(OPENAI, "sse", policy._by_direction["response"], max_held, on_limit)


def run(policy, stream: bytes, chunks: list[bytes] | None = None, **kw) -> tuple[bytes, list[bytes], StreamScanner]:
    s = scanner(policy, **kw)
    chunks = chunks if chunks is not None else [stream]
    outputs = [s.push(c) for c in chunks[:-1]] + [s.finish(chunks[-1])]
    return b"".join(outputs), outputs, s


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p for p in points if 0 < p < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


REDACT = rules(regex_rule("secret-redact", "redact", "response"))


def test_clean_stream_goes_out_byte_for_byte():
    stream = openai_stream(["Hello", " there,", " how can", " I help?"])
    out, _, s = run(REDACT, stream, [stream[:50], stream[50:]])
    assert out == stream
    assert s.hits == []


def test_secret_split_across_two_events_is_redacted():
    half = len(SECRET) // 2
    stream = openai_stream(["Your key is ", SECRET[:half], SECRET[half:], " keep it safe."])
    out, _, s = run(REDACT, stream)
    assert openai_text(out) == "Your key is [TEST_SECRET] keep it safe."
    assert SECRET[:6] not in out.decode()
    assert [h.rule.id for h in s.hits] == ["secret-redact"]


def test_no_character_of_a_split_secret_is_emitted_before_the_decision():
    pieces = ["prefix text ", *[SECRET[i:i + 3] for i in range(0, len(SECRET), 3)], " suffix"]
    stream = openai_stream(pieces)
    records = [r + b"\n\n" for r in stream.split(b"\n\n") if r]
    s = scanner(REDACT)
    emitted = b""
    for record in records[:-1]:
        emitted += s.push(record)
        assert "sk-A1" not in openai_text(emitted)
    emitted += s.finish(records[-1])
    assert openai_text(emitted) == "prefix text [TEST_SECRET] suffix"


def test_streaming_still_streams_long_clean_text():
    pieces = [f"word{i} " for i in range(100)]
    stream = openai_stream(pieces)
    records = [r + b"\n\n" for r in stream.split(b"\n\n") if r]
    s = scanner(REDACT)
    released_early = b"".join(s.push(r) for r in records[:50])
    # everything except at most the hold-back (max_span - 1 characters) is already out
    assert len(openai_text(released_early)) >= len("".join(pieces[:49])) - 42
    rest = s.finish(b"".join(records[50:]))
    assert released_early + rest == stream


def test_deny_mid_stream_ends_with_the_shapes_error_event():
    policy = rules(regex_rule("secret-deny", "deny", "response"))
    stream = openai_stream(["fine text ", SECRET, " more"])
    out, _, s = run(policy, stream)
    errors = openai_errors(out)
    assert errors and errors[0]["code"] == "policy_violation"
    assert SECRET[:6] not in out.decode()
    assert s.error is not None and s.error.rules == ("secret-deny",)
    assert s.push(b"data: {}\n\n") == b""


def test_monitor_mode_changes_nothing_but_records_the_hit():
    policy = rules(regex_rule("secret-watch", "redact", "response", mode="monitor"))
    stream = openai_stream(["key ", SECRET[:10], SECRET[10:]])
    out, _, s = run(policy, stream)
    assert out == stream
    assert [(h.rule.id, h.rule.mode) for h in s.hits] == [("secret-watch", "monitor")]


def test_hold_limit_fails_closed_by_default():
    stream = openai_stream(["x" * 10] * 300)
    s = scanner(REDACT, max_held=1024)
    # a single huge chunk with no record boundary cannot be released
    out = s.push(b"data: " + b"y" * 4096)
    assert openai_errors(out)[0]["code"] == "stream_hold_limit"
    assert stream  # the normal stream above stays well under the limit:
    out2, _, _ = run(REDACT, stream, max_held=1024)
    assert out2 == stream


def test_chunk_invariance_whole_per_byte_and_random():
    stream = openai_stream(["The key ", SECRET[:7], SECRET[7:15], SECRET[15:], " is here. ", "Bye."])
    whole, _, _ = run(REDACT, stream)
    per_byte, _, _ = run(REDACT, stream, [stream[i:i + 1] for i in range(len(stream))])
    rng = random.Random(7)
    for _ in range(20):
        points = rng.sample(range(1, len(stream)), 8)
        randomly, _, _ = run(REDACT, stream, split_at(stream, points))
        assert openai_text(randomly) == openai_text(whole)
    assert openai_text(per_byte) == openai_text(whole) == "The key [TEST_SECRET] is here. Bye."


def test_two_choices_are_scanned_independently():
    s = scanner(REDACT)
    a = b"".join(openai_stream(["a: ", SECRET[:9]], index=0).split(b"\n\n")[i] + b"\n\n" for i in range(3))
    b = openai_stream(["b: clean"], index=1).split(b"data: [DONE]")[0]
    c = openai_stream([SECRET[9:], " end"], index=0)
    out = s.push(a) + s.push(b) + s.finish(c)
    assert "[TEST_SECRET]" in openai_text(out)
    assert SECRET not in out.decode()


alphabet = st.sampled_from(list("abc XYZ.,\n") + ["é", "日", "🎉"])


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.text(alphabet, max_size=30), min_size=1, max_size=6),
    plant_count=st.integers(0, 3),
    seed=st.integers(0, 10_000),
)
def test_property_planted_secrets_never_leak_and_clean_text_is_unchanged(parts, plant_count, seed):
    rng = random.Random(seed)
    secrets = ["sk-" + "".join(rng.choice("ABCdef0123") for _ in range(rng.randint(20, 40)))
               for _ in range(plant_count)]
    pieces = list(parts)
    for secret in secrets:
        pieces.insert(rng.randint(0, len(pieces)), " " + secret + " ")
    full = "".join(pieces)
    deltas, cursor = [], 0
    while cursor < len(full):
        step = rng.randint(1, 12)
        deltas.append(full[cursor:cursor + step])
        cursor += step
    stream = openai_stream(deltas)
    chunks = split_at(stream, rng.sample(range(1, len(stream)), min(10, len(stream) - 1)))
    out, _, _ = run(REDACT, stream, chunks)
    text = openai_text(out)
    for secret in secrets:
        assert secret[:20] not in text
    expected = full
    for secret in secrets:
        expected = expected.replace(secret, "[TEST_SECRET]")
    assert text == expected


def test_a_record_that_is_not_json_is_scanned_as_raw_text():
    stream = openai_stream(["ok"]).replace(b"data: [DONE]\n\n", b"") + b"data: {\"truncated\": \"" + \
        SECRET.encode()
    out, _, s = run(REDACT, stream)
    assert SECRET not in out.decode()
    assert b"[TEST_SECRET]" in out and [h.rule.id for h in s.hits] == ["secret-redact"]


def test_no_rules_releases_everything():
    from extproc.policy.compile import CompiledPolicy  # noqa: F401
    s = StreamScanner(OPENAI, "sse", (), 65536, "fail_closed")
    stream = openai_stream(["a", "b"])
    assert s.push(stream) + s.finish() == stream


def test_response_size_cap_ends_the_stream_with_an_error_event():
    s = StreamScanner(OPENAI, "sse", REDACT._by_direction["response"], 65536, "fail_closed", max_total=2048)
    stream = openai_stream(["0123456789"] * 100)
    out = s.push(stream)
    assert openai_errors(out)[0]["code"] == "response_too_large"
    assert s.error is not None and s.push(b"more") == b""


def test_no_event_releases_a_held_tail_only_the_end_of_the_bytes_does():
    """finish_reason and [DONE] do not end inspection: text the upstream sends after them for the same
    choice continues the held tail, and a secret split across that boundary is still redacted."""
    head, tail = SECRET[:10], SECRET[10:]
    records = [r + b"\n\n" for r in openai_stream([f"clean text {head}"]).split(b"\n\n") if r]
    late = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": tail}}]}) + b"\n\n"
    s = scanner(REDACT)
    out = b"".join(s.push(r) for r in records)  # ... finish_reason, [DONE]
    assert head not in openai_text(out)  # still held: the bytes have not ended
    out += s.push(late) + s.finish()
    text = openai_text(out)
    assert head not in text and tail not in text and "[" in text


def test_a_streamed_secret_disguised_with_zero_width_characters_is_redacted():
    disguised = "\u200b".join(SECRET)
    stream = openai_stream(["key: ", disguised[:20], disguised[20:], " end"])
    out, _, _ = run(REDACT, stream, [stream[i:i + 40] for i in range(0, len(stream), 40)])
    assert openai_text(out) == "key: [TEST_SECRET] end"


def test_a_streamed_base64_encoded_secret_is_redacted_as_a_whole():
    import base64
    blob = base64.b64encode(SECRET.encode()).decode()
    stream = openai_stream(["data ", blob[:10], blob[10:25], blob[25:], " end"])
    out, _, _ = run(REDACT, stream)
    assert openai_text(out) == "data [TEST_SECRET] end"


def test_a_pem_private_key_split_over_many_events_is_redacted_as_one_multiline_match():
    from policies import policy as compile_policy
    secrets = compile_policy("version: 1\nrules:\n  - {id: keys, detector: secrets, direction: response, action: redact}\n")
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC" + c * 13 for c in "ABCDEFGHIJKL")
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    text = f"Here it is:\n{pem}\nUse it wisely."
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    out, _, s = run(secrets, openai_stream(pieces))
    result = openai_text(out)
    assert "MIIEvQIBADAN" not in result and "BEGIN PRIVATE KEY" not in result
    assert result.startswith("Here it is:\n[") and result.endswith("]\nUse it wisely.")
    assert [h.finding.label for h in s.hits] == ["private_key"]

"""Every registered API shape against its golden files in tests/golden/<shape>/.

Per shape: request.json -> request.segments.json (+ request.meta.json: model, stream flag, tool count);
response.json -> response.segments.json; stream.sse|stream.ndjson -> stream.deltas.json (deltas per record);
errors.json (the 403 error body and the stream error event); usage.json (token usage of the response and
of the stream, merged over its records as StreamScanner does). Shapes without a stream (NO_STREAM) have no
stream files. The expected files are reviewed by hand; after a deliberate change, rewrite them with
`PYTHONPATH=tests .venv/bin/python tests/unit/test_shapes_golden.py --update` and review the diff.
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from policies import regex_rule, rules

from extproc import shapes
from extproc.framing import Record, framer_for
from extproc.shapes.base import Shape, get_path, set_path
from extproc.shapes.openai_completions import string_leaves
from extproc.stream_scan import StreamScanner

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SHAPES = shapes.all_shapes()
NAMES = sorted(SHAPES)
NO_STREAM = {"openai_embeddings", "generic_json"}
STREAMING = [name for name in NAMES if name not in NO_STREAM]
DENY_MESSAGE = "Request blocked by policy rule secrets-deny"
FILES = ["request.json", "request.segments.json", "request.meta.json", "response.json",
         "response.segments.json",
         "errors.json", "usage.json"]


# ---- helpers ----------------------------------------------------------------------------------------------
def load(name: str, file: str) -> Any:
    return orjson.loads((GOLDEN / name / file).read_bytes())


def jsonable(value: Any) -> Any:
    """Tuples become lists, as in the golden files."""
    return orjson.loads(orjson.dumps(value))


def segments_json(segments: list) -> list[dict[str, Any]]:
    return jsonable([{"text": s.text, "role": s.role, "locator": s.locator} for s in segments])


def deltas_json(deltas: list) -> list[dict[str, Any]]:
    return jsonable([{"key": d.key, "text": d.text, "locator": d.locator} for d in deltas])


def stream_bytes(name: str) -> bytes:
    shape = SHAPES[name]
    return (GOLDEN / name / f"stream.{shape.stream_framing}").read_bytes()


def frame(shape: Shape, data: bytes) -> list[Record]:
    framer = framer_for(shape.stream_framing)
    return framer.feed(data) + framer.flush()


def record_deltas(shape: Shape, record: Record) -> list:
    payload = shape.decode_record(record)
    return [] if payload is None else shape.stream_deltas(payload)


def diff_paths(a: Any, b: Any, path: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    """Paths at which two JSON documents differ (a structural difference counts at its parent)."""
    if type(a) is not type(b):
        return {path}
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return {path}
        return set().union(*(diff_paths(a[k], b[k], (*path, k)) for k in a))
    if isinstance(a, list):
        if len(a) != len(b):
            return {path}
        return set().union(*(diff_paths(x, y, (*path, i)) for i, (x, y) in enumerate(zip(a, b, strict=True))))
    return set() if a == b else {path}


def expected_errors(shape: Shape) -> dict[str, Any]:
    return {"status": 403, "code": "policy_violation", "message": DENY_MESSAGE,
            "error_body": orjson.loads(shape.error_body(403, "policy_violation", DENY_MESSAGE)),
            "stream_error_event": shape.stream_error_event("policy_violation", DENY_MESSAGE).decode()}


def expected_usage(name: str) -> dict[str, Any]:
    shape = SHAPES[name]
    stream: dict[str, int] = {}
    if name not in NO_STREAM:
        for record in frame(shape, stream_bytes(name)):
            payload = shape.decode_record(record)
            stream.update((shape.usage_of(payload) if payload is not None else None) or {})
    return {"response": shape.usage_of(load(name, "response.json")), "stream": stream or None}


# ---- meta: every shape has goldens, every golden dir has a shape, no path claimed twice ------------------
def test_every_registered_shape_has_a_complete_golden_dir():
    for name in NAMES:
        assert (GOLDEN / name).is_dir(), f"shape {name} has no golden dir tests/golden/{name}/"
        stream_files = [f"stream.{SHAPES[name].stream_framing}", "stream.deltas.json"]
        files = FILES + ([] if name in NO_STREAM else stream_files)
        missing = [f for f in files if not (GOLDEN / name / f).is_file()]
        assert not missing, f"tests/golden/{name}/ lacks {missing}"


def test_every_golden_dir_is_a_registered_shape():
    dirs = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert dirs <= set(SHAPES), f"golden dirs without a registered shape: {sorted(dirs - set(SHAPES))}"


def test_no_path_is_claimed_twice_and_each_resolves_to_its_shape():
    claims = [(path, name) for name, shape in SHAPES.items() for path in shape.paths]
    paths = [path for path, _ in claims]
    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
    for path, name in claims:
        assert shapes.for_path(path + "?stream=1").name == name


# ---- requests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_request_segments(name):
    parsed = SHAPES[name].parse_request(load(name, "request.json"))
    assert segments_json(parsed.segments) == load(name, "request.segments.json")
    meta = {"model": parsed.model, "stream": parsed.stream, "tools": len(parsed.tools)}
    assert meta == load(name, "request.meta.json")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("part", ["request", "response"])
def test_upper_casing_every_segment_changes_exactly_those_strings(name, part):
    shape = SHAPES[name]
    doc = load(name, f"{part}.json")
    original = copy.deepcopy(doc)
    segments = shape.parse_request(doc).segments if part == "request" else shape.response_segments(doc)
    for segment in segments:
        shape.write_text(doc, segment.locator, segment.text.upper())
    changed = {s.locator for s in segments if s.text.upper() != s.text}
    assert changed or (part == "response" and name in NO_STREAM) or name == "generic_json"
    assert diff_paths(original, doc) == changed  # unknown fields and everything else untouched
    assert all(get_path(doc, s.locator) == s.text.upper() for s in segments)
    again = shape.parse_request(doc).segments if part == "request" else shape.response_segments(doc)
    assert [(s.role, s.locator, s.text) for s in again] == \
        [(s.role, s.locator, s.text.upper()) for s in segments]


# ---- responses --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_response_segments(name):
    segments = SHAPES[name].response_segments(load(name, "response.json"))
    assert segments_json(segments) == load(name, "response.segments.json")


# ---- streams ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", STREAMING)
def test_stream_frames_losslessly_and_every_data_record_is_json(name):
    shape, data = SHAPES[name], stream_bytes(name)
    records = frame(shape, data)
    assert b"".join(r.raw for r in records) == data
    for record in records:
        if record.data not in (None, b"[DONE]"):
            assert shape.decode_record(record) is not None, record.raw


@pytest.mark.parametrize("name", STREAMING)
def test_stream_deltas(name):
    shape = SHAPES[name]
    actual = [deltas_json(record_deltas(shape, r)) for r in frame(shape, stream_bytes(name))]
    assert actual == load(name, "stream.deltas.json")


@pytest.mark.parametrize("name", STREAMING)
def test_reencoding_an_unchanged_payload_round_trips(name):
    shape = SHAPES[name]
    for record in frame(shape, stream_bytes(name)):
        payload = shape.decode_record(record)
        if payload is None:
            continue
        again = frame(shape, shape.encode_record(record, payload))
        assert len(again) == 1
        assert again[0].event == record.event
        assert shape.decode_record(again[0]) == payload


@pytest.mark.parametrize("name", STREAMING)
def test_stream_delta_locators_write_through_set_path(name):
    shape = SHAPES[name]
    for record in frame(shape, stream_bytes(name)):
        deltas = record_deltas(shape, record)
        if not deltas:
            continue
        payload = shape.decode_record(record)
        for delta in deltas:
            set_path(payload, delta.locator, delta.text.upper())  # what StreamScanner does
        [again] = frame(shape, shape.encode_record(record, payload))
        assert [(d.key, d.text, d.locator) for d in record_deltas(shape, again)] == \
            [(d.key, d.text.upper(), d.locator) for d in deltas]


@pytest.mark.parametrize("name", STREAMING)
def test_clean_stream_passes_the_scanner_byte_for_byte(name):
    shape, data = SHAPES[name], stream_bytes(name)
    scanner = StreamScanner(shape, shape.stream_framing, rules(regex_rule("s", "redact", "response"))
                            ._by_direction["response"], 1 << 20, "fail_closed")
    records = frame(shape, data)
    out = b"".join(scanner.push(r.raw) for r in records) + scanner.finish()
    assert out == data


def _split_pattern(shape: Shape, records: list[Record]) -> str:
    """Two characters either side of the first boundary between consecutive deltas of one key."""
    last: dict[Any, str] = {}
    for record in records:
        for delta in record_deltas(shape, record):
            before = last.get(delta.key)
            if before is not None and len(before) >= 2 and len(delta.text) >= 2:
                return before[-2:] + delta.text[:2]
            last[delta.key] = delta.text
    raise AssertionError("golden stream has no key with two consecutive deltas")


def _texts_by_key(shape: Shape, records: list[Record]) -> dict[Any, str]:
    texts: dict[Any, str] = {}
    for record in records:
        for delta in record_deltas(shape, record):
            texts[delta.key] = texts.get(delta.key, "") + delta.text
    return texts


def _redact_run(shape: Shape, secret: str, chunks: list[bytes]) -> bytes:
    """The stream through a StreamScanner redacting `secret`, fed chunk by chunk."""
    pattern = "".join(f"\\\\x{{{ord(c):x}}}" for c in secret)  # RE2 \x{..} escapes, YAML-escaped
    policy = rules(regex_rule("golden", "redact", "response", pattern=pattern, label="golden",
                              max_length=len(secret)))
    scanner = StreamScanner(shape, shape.stream_framing, policy._by_direction["response"], 1 << 20,
                            "fail_closed")
    return b"".join(scanner.push(c) for c in chunks[:-1]) + scanner.finish(chunks[-1])


@pytest.mark.parametrize("name", STREAMING)
def test_a_match_split_across_records_is_redacted_in_every_copy_of_the_text(name):
    shape = SHAPES[name]
    records = frame(shape, stream_bytes(name))
    secret = _split_pattern(shape, records)
    out = frame(shape, _redact_run(shape, secret, [r.raw for r in records]))
    assert [r.event for r in out] == [r.event for r in records]
    expected = {key: text.replace(secret, "[GOLDEN]") for key, text in _texts_by_key(shape, records).items()}
    assert _texts_by_key(shape, out) == expected
    for record in out:  # no copy of the text anywhere in any payload escaped redaction
        leaks = [path for path, text in string_leaves(shape.decode_record(record), ()) if secret in text]
        assert not leaks, (record.raw, leaks)


@pytest.mark.parametrize("name", STREAMING)
def test_redacted_output_does_not_depend_on_chunking(name):
    shape, data = SHAPES[name], stream_bytes(name)
    secret = _split_pattern(shape, frame(shape, data))
    whole = _redact_run(shape, secret, [data])
    assert _redact_run(shape, secret, [data[i:i + 1] for i in range(len(data))]) == whole
    rng = random.Random(name)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _redact_run(shape, secret, chunks) == whole


# ---- usage ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_usage(name):
    assert expected_usage(name) == load(name, "usage.json")


# ---- errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_error_body_and_stream_error_event(name):
    assert expected_errors(SHAPES[name]) == load(name, "errors.json")


@pytest.mark.parametrize("name", NAMES)
def test_stream_error_event_is_json_records_without_text(name):
    """One error record (the Responses API adds `response.failed`, which its SDK's stream helper reads)."""
    shape = SHAPES[name]
    event = shape.stream_error_event("policy_violation", DENY_MESSAGE)
    records = frame(shape, event)
    assert len(records) == (2 if name == "openai_responses" else 1)
    assert b"".join(r.raw for r in records) == event
    for record in records:
        assert isinstance(shape.decode_record(record), dict)
        assert record_deltas(shape, record) == []


# ---- rewriting the expected files (run by hand, then review the diff) -------------------------------------
def _dump_rows(rows: list[Any]) -> bytes:
    body = b",\n".join(b"  " + orjson.dumps(row) for row in rows)
    return b"[\n" + body + b"\n]\n" if rows else b"[]\n"


def _update(name: str) -> None:
    shape, folder = SHAPES[name], GOLDEN / name
    parsed = shape.parse_request(load(name, "request.json"))
    (folder / "request.segments.json").write_bytes(_dump_rows(segments_json(parsed.segments)))
    meta = {"model": parsed.model, "stream": parsed.stream, "tools": len(parsed.tools)}
    (folder / "request.meta.json").write_bytes(orjson.dumps(meta) + b"\n")
    segments = shape.response_segments(load(name, "response.json"))
    (folder / "response.segments.json").write_bytes(_dump_rows(segments_json(segments)))
    errors = orjson.dumps(expected_errors(shape), option=orjson.OPT_INDENT_2)
    (folder / "errors.json").write_bytes(errors + b"\n")
    (folder / "usage.json").write_bytes(orjson.dumps(expected_usage(name)) + b"\n")
    if name not in NO_STREAM:
        rows = [deltas_json(record_deltas(shape, r)) for r in frame(shape, stream_bytes(name))]
        (folder / "stream.deltas.json").write_bytes(_dump_rows(rows))


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    for shape_name in NAMES:
        _update(shape_name)

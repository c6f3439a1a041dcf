"""Every string of a document reaches the detectors: unknown fields, keys, long numbers and JSON inside
strings (decoded); edits go back through any locator."""

import orjson

from extproc import canonical_json, document
from extproc.model import Segment
from extproc.redact import Span, redacted_pieces


def texts(doc):
    return sorted(text for _, text in document.strings(doc))


def test_every_string_unknown_key_and_long_number_is_found():
    doc = canonical_json.loads(b'{"model":"m","options":{"stop":["s1"]},"x_vendor_key":{"deep":[{"k":"v"}]},'
                               b'"card":4111111111111111,"n":42}')
    assert texts(doc) == sorted(["m", "s1", "x_vendor_key", "deep", "k", "v", "card", "4111111111111111"])


def test_json_inside_a_string_is_decoded_before_scanning():
    arguments = orjson.dumps({"query": "AKIA\u0049OSFODNN7EXAMPLE\n"}).decode().replace("I", "\\u0049", 1)
    doc = {"tool_calls": [{"function": {"name": "f", "arguments": arguments}}]}
    found = {loc: text for loc, text in document.strings(doc)}
    assert "AKIAIOSFODNN7EXAMPLE\n" in found.values()
    locator = next(loc for loc, text in found.items() if text.startswith("AKIA"))
    document.write_path(doc, locator, "[KEY]")
    assert orjson.loads(doc["tool_calls"][0]["function"]["arguments"]) == {"query": "[KEY]"}


def test_complete_adds_one_other_segment_and_keeps_shape_segments():
    doc = {"messages": [{"role": "user", "content": "hi"}], "system": "be nice", "meta": {"a": "b"}}
    shape_segments = [Segment("hi", "user", ("messages", 0, "content"))]
    segments = document.complete(doc, shape_segments)
    assert segments[0] == shape_segments[0]
    other = segments[1]
    assert other.role == document.OTHER
    assert set(other.text.split(document.SEPARATOR)) == {"user", "be nice", "meta", "a", "b"}


def test_redaction_of_a_joined_segment_edits_only_the_touched_strings():
    doc = {"a": "keep", "b": "secret here", "c": "also keep"}
    segment = document.joined([(("a",), "keep"), (("b",), "secret here"), (("c",), "also keep")], "other")
    start = segment.text.index("secret")
    for locator, text in redacted_pieces(segment, [Span(start, start + 6, "[X]")]):
        document.write_path(doc, locator, text)
    assert doc == {"a": "keep", "b": "[X] here", "c": "also keep"}


def test_a_key_is_renamed_when_redacted():
    doc = {"AKIAIOSFODNN7EXAMPLE": 1}
    (locator, _text), = document.strings(doc)
    document.write_path(doc, locator, "[KEY]")
    assert doc == {"[KEY]": 1}

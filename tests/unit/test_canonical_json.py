"""One canonical reading of JSON: what two parsers could read differently is refused, numbers keep their
spelling through a rewrite."""

import orjson
import pytest

from extproc import canonical_json
from extproc.canonical_json import MAX_DEPTH, Ambiguous


@pytest.mark.parametrize("body", [
    b'{"model":"a","model":"b"}',                    # Go and Python keep the last, a first-wins reader the first
    b'{"model":"a","Model":"b"}',                    # Go matches field names case-insensitively
    b'{"messages":[],"MESSAGES":[]}',
    '{"\u017ftream":true}'.encode(),                 # Go folds the long s to s
    b'{"Messages":[{"role":"user","content":"x"}]}',
    b'{"messages":[{"Content":"x","role":"user"}]}',  # nested known field
    b'{"x":{"a":1,"A":2}}',                          # any two keys equal under folding
])
def test_ambiguous_keys_are_refused(body):
    with pytest.raises(Ambiguous):
        canonical_json.loads(body)


def test_kelvin_sign_variant_of_a_known_key_is_refused():
    with pytest.raises(Ambiguous, match="case variant of `thinking`"):
        canonical_json.loads("{\"thin\u212aing\": true}".encode())  # the Kelvin sign folds to k


@pytest.mark.parametrize("body", [b'{"a":NaN}', b'{"a":Infinity}', b'\xef\xbb\xbf{}', b'{"a":"\\ud800"}',
                                  b'{"a":"\xff"}', b'{"a":1} x'])
def test_what_json_does_not_allow_is_refused(body):
    with pytest.raises(ValueError):
        canonical_json.loads(body)


def test_nesting_beyond_the_limit_is_refused_and_within_it_read():
    assert canonical_json.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(Ambiguous, match="nested"):
        canonical_json.loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))


def test_json_schema_property_names_are_free():
    doc = canonical_json.loads(b'{"parameters":{"properties":{"Name":{"type":"string"},"Model":{}}}}')
    assert set(doc["parameters"]["properties"]) == {"Name", "Model"}


def test_numbers_keep_their_spelling_through_a_rewrite():
    body = b'{"a":1E2,"b":123456789012345678901234567890,"c":[1,2.50,-0.0],"d":"x"}'
    doc = canonical_json.loads(body)
    assert doc["a"] == 100 and doc["b"] == 123456789012345678901234567890
    doc["d"] = "y"
    assert canonical_json.dumps(doc) == body.replace(b'"x"', b'"y"')
    assert orjson.loads(canonical_json.dumps(doc))["c"] == [1, 2.5, -0.0]

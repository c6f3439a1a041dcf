"""Shapes on bad and odd input: wrong types are MalformedRequest naming the field, stream defaults per API,
token arrays are skipped, error types per status, and junk never crashes a shape (fuzzed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc import shapes
from extproc.errors import MalformedRequest
from extproc.shapes.base import get_path

SHAPES = shapes.all_shapes()
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def golden_request(name: str) -> dict[str, Any]:
    return orjson.loads((GOLDEN / name / "request.json").read_bytes())


def with_field(name: str, **fields: Any) -> dict[str, Any]:
    doc = golden_request(name)
    doc.update(fields)
    return doc


def malformed(name: str, doc: Any) -> str:
    with pytest.raises(MalformedRequest) as caught:
        SHAPES[name].parse_request(doc)
    return caught.value.message


# ---- wrong types name the field ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("field, value, expected", [
    ("stream", "yes", "`stream` must be a boolean"),
    ("model", 5, "`model` must be a string"),
    ("tools", {"name": "x"}, "`tools` must be an array of objects"),
    ("tools", ["x"], "`tools` must be an array of objects"),
])
def test_common_fields_of_the_wrong_type(name, field, value, expected):
    assert malformed(name, with_field(name, **{field: value})) == expected


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object(name, body):
    assert malformed(name, body) == "request body must be a JSON object"


CASES = [
    ("openai_completions", {"prompt": None}, "`prompt` must be a string, an array of strings"),
    ("openai_completions", {"prompt": 5}, "`prompt` must be a string, an array of strings"),
    ("openai_completions", {"prompt": [{"text": "x"}]}, "`prompt` must be a string, an array of strings"),
    ("openai_completions", {"suffix": 3}, "`suffix` must be a string"),
    ("openai_embeddings", {"input": None}, "`input` must be a string, an array of strings"),
    ("openai_embeddings", {"input": {"text": "x"}}, "`input` must be a string, an array of strings"),
    ("openai_responses", {"instructions": ["x"]}, "`instructions` must be a string"),
    ("openai_responses", {"input": 5}, "`input` must be a string or an array of input items"),
    ("openai_responses", {"input": ["hi"]}, "`input[0]` must be an object"),
    ("openai_responses", {"input": [{"role": "user", "content": 5}]},
     "`input[0].content` must be a string or an array of content parts"),
    ("openai_responses", {"input": [{"role": "user", "content": ["hi"]}]},
     "`input[0].content[0]` must be an object"),
    ("openai_responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
     "`input[0].content[0].text` must be a string"),
    ("openai_responses", {"input": [{"type": "function_call", "arguments": {"a": 1}}]},
     "`input[0].arguments` must be a string"),
    ("openai_responses", {"input": [{"type": "function_call_output", "output": 5}]},
     "`input[0].output` must be a string"),
    ("ollama_chat", {"messages": "hi"}, "`messages` must be an array of messages"),
    ("ollama_chat", {"messages": ["hi"]}, "`messages[0]` must be an object"),
    ("ollama_chat", {"messages": [{"role": "user", "content": 5}]}, "`messages.0.content` must be a string"),
    ("ollama_chat", {"messages": [{"role": "assistant", "content": "", "thinking": 5}]},
     "`messages[0].thinking` must be a string"),
    ("ollama_chat", {"messages": [{"role": "assistant", "content": "", "tool_calls": {}}]},
     "`messages[0].tool_calls` must be an array"),
    ("ollama_chat", {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": 5}}]}]},
     "`messages[0].tool_calls[0].function.arguments` must be an object"),
    ("ollama_generate", {"prompt": 5}, "`prompt` must be a string"),
    ("generic_json", {"model": ["x"]}, "`model` must be a string"),
    ("ollama_generate", {"system": ["x"]}, "`system` must be a string"),
    ("ollama_generate", {"suffix": {}}, "`suffix` must be a string"),
    ("anthropic_messages", {"messages": None}, "`messages` must be an array of messages"),
    ("anthropic_messages", {"system": 5}, "`system` must be a string or an array of text blocks"),
    ("anthropic_messages", {"system": [{"type": "text"}]}, "`system[0]` must be a text block"),
    ("anthropic_messages", {"messages": [5]}, "`messages[0]` must be an object"),
    ("anthropic_messages", {"messages": [{"role": "user"}]},
     "`messages[0].content` must be a string or an array of content blocks"),
    ("anthropic_messages", {"messages": [{"role": "user", "content": [5]}]},
     "`messages[0].content[0]` must be an object"),
    ("anthropic_messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "`messages[0].content[0].text` must be a string"),
    ("anthropic_messages", {"messages": [{"role": "assistant",
                                          "content": [{"type": "tool_use", "input": "x"}]}]},
     "`messages[0].content[0].input` must be an object"),
    ("anthropic_messages", {"messages": [{"role": "user",
                                          "content": [{"type": "tool_result", "content": 5}]}]},
     "`messages[0].content[0].content` must be a string or an array of content blocks"),
    ("anthropic_messages", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": 5}}]}]},
     "`messages[0].content[0].source.data` must be a string"),
]


@pytest.mark.parametrize("name, fields, expected", CASES)
def test_shape_specific_fields_of_the_wrong_type(name, fields, expected):
    assert malformed(name, with_field(name, **fields)).startswith(expected)


def test_every_shape_has_specific_malformed_cases():
    assert {name for name, _, _ in CASES} >= set(SHAPES) - {"openai_chat"}


# ---- stream defaults --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("stream", ["absent", None, True, False])
def test_stream_flag_defaults_per_api(name, stream):
    doc = golden_request(name)
    doc.pop("stream", None)
    if stream != "absent":
        doc["stream"] = stream
    default = name.startswith("ollama_")  # Ollama's native API streams unless told not to
    expected = default if stream in ("absent", None) else stream
    if name == "openai_chat" and stream is None:
        expected = False
    assert SHAPES[name].parse_request(doc).stream is expected


# ---- text we leave alone and optional fields --------------------------------------------------------------
@pytest.mark.parametrize("name, field", [("openai_completions", "prompt"), ("openai_embeddings", "input")])
@pytest.mark.parametrize("tokens", [[1212, 318], [[1212, 318], [257]]])
def test_token_id_arrays_carry_no_segments(name, field, tokens):
    doc = {"model": "m", field: tokens}
    assert SHAPES[name].parse_request(doc).segments == []


def test_responses_input_may_be_a_string_or_absent():
    responses = SHAPES["openai_responses"]
    assert [(s.text, s.role, s.locator) for s in responses.parse_request({"input": "hi"}).segments] == \
        [("hi", "user", ("input",))]
    assert responses.parse_request({"model": "m", "previous_response_id": "resp_1"}).segments == []


def test_ollama_requests_may_omit_their_text_to_load_a_model():
    assert SHAPES["ollama_chat"].parse_request({"model": "llama3.2"}).segments == []
    assert SHAPES["ollama_generate"].parse_request({"model": "llama3.2"}).segments == []


def test_anthropic_system_as_a_string():
    parsed = SHAPES["anthropic_messages"].parse_request({"system": "Be brief.", "messages": []})
    assert [(s.text, s.role, s.locator) for s in parsed.segments] == [("Be brief.", "system", ("system",))]


# ---- error types ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, error_type", [(400, "invalid_request_error"), (403, "permission_error"),
                                                (413, "request_too_large"), (429, "rate_limit_error"),
                                                (500, "api_error"), (503, "api_error")])
def test_anthropic_error_type_per_status(status, error_type):
    body = orjson.loads(SHAPES["anthropic_messages"].error_body(status, "x", "m"))
    assert body == {"type": "error", "error": {"type": error_type, "message": "m"}}


@pytest.mark.parametrize("code, error_type", [("policy_violation", "permission_error"),
                                              ("stream_hold_limit", "api_error"),
                                              ("response_too_large", "api_error"),
                                              ("budget_exceeded", "rate_limit_error"),
                                              ("policy_error", "api_error")])
def test_anthropic_stream_error_type_per_code(code, error_type):
    event = SHAPES["anthropic_messages"].stream_error_event(code, "m")
    assert event.startswith(b"event: error\ndata: ")
    assert orjson.loads(event.split(b"data: ", 1)[1])["error"]["type"] == error_type


@pytest.mark.parametrize("name", ["ollama_chat", "ollama_generate"])
def test_ollama_errors_are_plain_messages_whatever_the_status(name):
    for status in (400, 403, 413, 429, 503):
        assert orjson.loads(SHAPES[name].error_body(status, "code", "no")) == {"error": "no"}


# ---- the response side never refuses: a bad upstream document is not the client's malformed request ------
# Reported to its owner: openai_chat.response_segments raises MalformedRequest on e.g. an object `content`,
# and its stream_deltas raises TypeError on e.g. `"choices": true`.
RESPONSE_SIDE_RAISES: set[str] = set()
JUNK_RESPONSES = [[], "text", 5, {"choices": 5}, {"choices": [{"message": {"content": {"a": 1}}}]},
                  {"output": [5, {"type": ["x"], "content": 3}]},
                  {"content": [5, {"type": "tool_use", "input": 3}]},
                  {"message": {"content": 5, "tool_calls": [{"function": {"arguments": 5}}]}},
                  {"response": 5, "thinking": [], "choices": [{"text": 5}]}]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(n in RESPONSE_SIDE_RAISES, raises=MalformedRequest, strict=True,
                                            reason="reported bug: response_segments raises MalformedRequest"))
    for n in sorted(SHAPES)])
def test_junk_responses_have_no_segments_and_raise_nothing(name):
    for doc in JUNK_RESPONSES:
        assert all(isinstance(s.text, str) for s in SHAPES[name].response_segments(doc))


JUNK_EVENTS = [[], 5, {"choices": True}, {"choices": [5, {"delta": 5}]}, {"type": ["x"], "delta": 5},
               {"type": "content_block_delta", "delta": {"type": ["x"]}}, {"message": 5}, {"response": 7},
               {"type": "response.output_text.delta", "delta": 5},
               {"type": "response.completed", "response": 5},
               {"message": {"tool_calls": [{"function": {"arguments": {"a": 5}}}]}}]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(n in RESPONSE_SIDE_RAISES, raises=TypeError, strict=True,
                                            reason="reported bug: stream_deltas raises on non-list choices"))
    for n in sorted(SHAPES)])
def test_junk_stream_events_have_no_deltas_and_raise_nothing(name):
    for payload in JUNK_EVENTS:
        assert all(isinstance(d.text, str) for d in SHAPES[name].stream_deltas(payload))


# ---- fuzz: only MalformedRequest, and every locator points at its text -------------------------------------
KEYS = ["role", "content", "text", "type", "messages", "input", "prompt", "system", "suffix", "instructions",
        "tool_calls", "function", "arguments", "output", "choices", "delta", "message", "index", "part",
        "item",
        "response", "content_block", "partial_json", "thinking", "refusal", "summary", "source", "data",
        "output_index", "content_index", "stream", "model", "tools"]
TYPES = ["message", "text", "tool_use", "tool_result", "document", "function_call", "function_call_output",
         "input_text", "output_text", "content_block_delta", "content_block_start", "message_start",
         "text_delta", "input_json_delta", "thinking_delta", "response.output_text.delta",
         "response.output_text.done", "response.output_item.done", "response.completed",
         "response.function_call_arguments.delta", "response.content_part.done"]
leaves = st.none() | st.booleans() | st.integers(-2, 3) | st.sampled_from(TYPES) | st.text(max_size=4)
json_values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS), kids, max_size=4), max_leaves=12)


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        found.extend(_paths(value, (*path, key)))
    return found


def _mutated(name: str, data: st.DataObject) -> Any:
    doc = golden_request(name) if data.draw(st.booleans()) else \
        orjson.loads((GOLDEN / name / "response.json").read_bytes())
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(json_values)
    if not path:
        return value
    get_path(doc, path[:-1])[path[-1]] = value
    return doc


def _check_locators(doc: Any, items: list) -> None:
    for item in items:
        assert get_path(doc, item.locator) == item.text
        hash(getattr(item, "key", None))  # StreamScanner keeps running text in a dict by key


@pytest.mark.parametrize("name", sorted(SHAPES))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_documents_only_ever_raise_malformed_request(name, data):
    shape = SHAPES[name]
    doc = _mutated(name, data)
    try:
        parsed = shape.parse_request(copy.deepcopy(doc))
    except MalformedRequest:
        pass
    else:
        _check_locators(parsed.doc, parsed.segments)
    payload = data.draw(json_values)
    try:
        _check_locators(doc, shape.response_segments(doc))
        _check_locators(doc, shape.stream_deltas(doc))
        _check_locators(payload, shape.stream_deltas(payload))
    except (MalformedRequest, TypeError):
        if name not in RESPONSE_SIDE_RAISES:  # known, reported: see the junk tests above
            raise

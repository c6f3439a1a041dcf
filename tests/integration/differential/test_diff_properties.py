"""Issue 13, property tests: for every shape, a valid body with a planted secret at a random place (a string
the shape knows or not, a new unknown field at any depth, a case-variant or Unicode-folded spelling of a known
key placed after it), written with random JSON escapes. Through real Envoy with the strict policy, against
Go's encoding/json (Ollama's structs and its OpenAI/Anthropic compatibility structs) and FastAPI/pydantic:
the gateway refuses the body, or the upstream's decoded view holds no planted secret. Bounded and
derandomized so CI is deterministic; shrinking is off to bound the time a failure takes."""

import copy
import json
import os

import pytest
from harness import (
    ALLOWED_CLAUDE,
    ALLOWED_OLLAMA,
    ALLOWED_OPENAI,
    AWS_KEY,
    CARD,
    OPENAI_KEY,
    assert_mediated,
    fastapi_upstream,
    go_upstream,
    stack_fixture,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration
ARGS = json.dumps({"q": "x"})
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}
SHAPES = {
    "openai_chat": ("/v1/chat/completions", {
        "model": ALLOWED_OPENAI, "temperature": 0.5, "stop": ["END"], "response_format": {"type": "text"},
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hello"}]},
                     {"role": "assistant", "content": "ok", "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": ARGS}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "result"}],
        "tools": [LOOKUP]}),
    "ollama_chat": ("/api/chat", {
        "model": ALLOWED_OLLAMA, "stream": False, "options": {"temperature": 0.5, "stop": ["END"]},
        "format": {"type": "object", "properties": {"a": {"type": "string"}}},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"function": {"name": "lookup", "arguments": {"q": "x"}}}]},
                     {"role": "tool", "content": "result", "tool_name": "lookup"}],
        "tools": [LOOKUP]}),
    "ollama_generate": ("/api/generate", {
        "model": ALLOWED_OLLAMA, "prompt": "hello", "system": "be brief", "template": "{{ .Prompt }}",
        "suffix": "end", "options": {"stop": ["END"]}, "format": "json", "stream": False}),
    "anthropic_messages": ("/v1/messages", {
        "model": ALLOWED_CLAUDE, "max_tokens": 16, "system": [{"type": "text", "text": "be brief"}],
        "metadata": {"user_id": "u1"},
        "messages": [{"role": "user", "content": "hello"},
                     {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                                                       {"type": "tool_use", "id": "t1", "name": "lookup",
                                                        "input": {"q": "x"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                   "content": "result"}]}],
        "tools": [{"name": "lookup", "description": "find", "input_schema": {"type": "object"}}]}),
    "openai_responses": ("/v1/responses", {
        "model": ALLOWED_OPENAI, "instructions": "be brief", "text": {"format": {"type": "text"}},
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
                  {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": ARGS},
                  {"type": "function_call_output", "call_id": "c1", "output": "result"}],
        "tools": [{"type": "function", "name": "lookup", "description": "find", "parameters": {"type": "object"}}]}),
}
SECRETS = (AWS_KEY, OPENAI_KEY, CARD)
UNKNOWN_KEYS = ("x_note", "metadata", "extra", "cache_control", "name", "description", "stop", "hint")
FOLDS = {"s": "\u017f", "k": "\u212a", "K": "\u212a"}  # Go's encoding/json folds ſ to s and the Kelvin sign to k
SETTINGS = settings(max_examples=int(os.environ.get("EXTPROC_DIFF_EXAMPLES", "30")), deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

go = stack_fixture(go_upstream)
py = stack_fixture(fastapi_upstream)


def walk(node, parent=None, key=None):
    """(parent, key, node) for every node of a document, the root included."""
    yield parent, key, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for child_key, child in list(items):
        yield from walk(child, node, child_key)


def plant_in_string(doc, draw, text):
    spots = [(p, k) for p, k, n in walk(doc) if isinstance(n, str)]
    parent, key = draw(st.sampled_from(spots))
    parent[key] = draw(st.sampled_from(["", "note: ", parent[key] + " "])) + text


def plant_unknown_field(doc, draw, text):
    dicts = [n for _, _, n in walk(doc) if isinstance(n, dict)]
    target = draw(st.sampled_from(dicts))
    name = draw(st.sampled_from(UNKNOWN_KEYS)) + draw(st.sampled_from(["", "_1", "X"]))
    target[name] = draw(st.sampled_from([text, [text], {"v": text}, {"a": [{"b": text}]}]))


def key_variant(draw, key):
    spelled = []
    for char in key:
        options = [char, char.upper(), char.lower()] + ([FOLDS[char]] if char in FOLDS else [])
        spelled.append(draw(st.sampled_from(options)))
    variant = "".join(spelled)
    return variant if variant != key else key.upper() if key.upper() != key else key.capitalize() + "\u017f"


def plant_case_variant(doc, draw, text):
    """A second spelling of a known key after it; Go matches it case-insensitively and the last one wins."""
    dicts = [n for _, _, n in walk(doc) if isinstance(n, dict) and n]
    target = draw(st.sampled_from(dicts))
    key = draw(st.sampled_from(sorted(target)))
    value = copy.deepcopy(target[key])
    strings = [(p, k) for p, k, n in walk(value) if isinstance(n, str) and p is not None]
    if strings:
        parent, inner = draw(st.sampled_from(strings))
        parent[inner] = text
    else:
        value = text
    target[key_variant(draw, key)] = value


def escaped(draw, raw: str, secret: str) -> str:
    """The JSON text with each occurrence of `secret` written with random \\uXXXX escapes."""
    flags = draw(st.lists(st.booleans(), min_size=len(secret), max_size=len(secret)))
    upper = draw(st.booleans())
    spelled = "".join((f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}") if f else c
                      for c, f in zip(secret, flags))
    return raw.replace(secret, spelled)


def planted_body(data, shape):
    path, base = SHAPES[shape]
    doc, draw = copy.deepcopy(base), data.draw
    secret = draw(st.sampled_from(SECRETS), label="secret")
    text = draw(st.sampled_from(["{}", "key {}", "{} end", "a\n{}"])).format(secret)
    plant = draw(st.sampled_from([plant_in_string, plant_unknown_field, plant_case_variant]), label="how")
    plant(doc, draw, text)
    raw = escaped(draw, json.dumps(doc, ensure_ascii=False), secret)
    return path, raw.encode(), secret


@pytest.mark.parametrize("shape", list(SHAPES))
@SETTINGS
@given(data=st.data())
def test_property_go_decodes_no_planted_secret(go, shape, data):
    path, raw, secret = planted_body(data, shape)
    assert_mediated(*go, path, raw, needles=(secret,))


@pytest.mark.parametrize("shape", ["openai_chat", "anthropic_messages", "openai_responses"])
@SETTINGS
@given(data=st.data())
def test_property_pydantic_decodes_no_planted_secret(py, shape, data):
    path, raw, secret = planted_body(data, shape)
    assert_mediated(*py, path, raw, needles=(secret,))

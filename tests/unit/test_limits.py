"""Consumption limits: message count, estimated prompt tokens, output-token caps clamped or refused."""

import orjson
import pytest
from policies import policy
from sessions import chat, request_body, request_headers

from extproc.session import Session


def limited(**limits):
    body = ", ".join(f"{k}: {v}" for k, v in limits.items())
    return policy(f"version: 1\nsettings: {{limits: {{{body}}}}}\nallow_empty: true\nrules: []\n")


def send(session_policy, doc, path="/v1/chat/completions"):
    session = Session(session_policy)
    session.handle(request_headers(path=path))
    return session.handle(request_body(doc))


def test_too_many_messages_is_413_in_api_format():
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 5}
    reply = send(limited(max_messages=4), doc)
    assert reply.immediate_response.status.code == 413
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "too_many_messages"
    assert send(limited(max_messages=5), doc).WhichOneof("response") == "request_body"


def test_estimated_prompt_tokens_over_the_limit_is_refused():
    reply = send(limited(max_prompt_tokens=100), chat("word " * 200))
    assert reply.immediate_response.status.code == 413
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "prompt_too_long"


@pytest.mark.parametrize("path,doc,locator", [
    ("/v1/chat/completions", {"messages": [], "max_tokens": 5000}, ("max_tokens",)),
    ("/v1/messages", {"messages": [], "max_tokens": 5000}, ("max_tokens",)),
    ("/api/chat", {"messages": [], "options": {"num_predict": 5000, "temperature": 0.1}}, ("options", "num_predict")),
])
def test_output_cap_is_clamped_in_place(path, doc, locator):
    reply = send(limited(max_output_tokens=256), doc, path)
    sent = orjson.loads(reply.request_body.response.body_mutation.body)
    value = sent
    for step in locator:
        value = value[step]
    assert value == 256
    if "options" in doc:
        assert sent["options"]["temperature"] == 0.1


def test_absent_output_cap_is_imposed_and_small_caps_are_left_alone():
    reply = send(limited(max_output_tokens=256), {"messages": [], "model": "m"})
    assert orjson.loads(reply.request_body.response.body_mutation.body)["max_tokens"] == 256
    untouched = send(limited(max_output_tokens=256), {"messages": [], "max_tokens": 10})
    assert not untouched.request_body.response.HasField("body_mutation")


def test_output_cap_can_deny_instead():
    reply = send(policy("version: 1\nsettings: {limits: {max_output_tokens: 100, on_output_over: deny}}\nallow_empty: true\nrules: []\n"),
                 {"messages": [], "max_tokens": 5000})
    assert reply.immediate_response.status.code == 413
    assert orjson.loads(reply.immediate_response.body)["error"]["code"] == "max_tokens_too_large"


def test_non_integer_cap_is_400():
    reply = send(limited(max_output_tokens=100), {"messages": [], "max_tokens": "lots"})
    assert reply.immediate_response.status.code == 400

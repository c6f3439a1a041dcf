"""`check: tools`: params validated at load, request-side strip/deny/tool_choice per shape, buffered response
tool calls per shape, monitor mode."""

from __future__ import annotations

import orjson
import pytest

from extproc.checks._tool_schema import ArgSchema
from extproc.exchange_cases import run_exchange
from extproc.policy.load import PolicyError
from tests.policies import policy


def tools_policy(params: str, mode: str = "enforce", action: str = "deny") -> object:
    return policy(f"""
version: 1
rules:
  - id: tools
    check: tools
    mode: {mode}
    action: {action}
    params: {params}
""")


STRIP = tools_policy("{allow: [get_*, send_email], deny: [get_secret], approval_required: [send_email], "
                     "high_risk: [send_email], tool_choice_modes: [auto, none, tool]}")
DENY = tools_policy("{deny: [shell], on_disallowed: deny}")
SCHEMA = tools_policy("""
      allow: [get_weather]
      arguments:
        get_*: {type: object, required: [city], additionalProperties: false,
                properties: {city: {type: string, maxLength: 8, pattern: "^[A-Z][a-z]+$"}, days: {type: integer, minimum: 1, maximum: 7}}}
""")

# name -> (path, request with tools [get_weather, shell] and a tool_choice forcing `forced`)
def openai_chat(forced=None):
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": True,
           "tools": [{"type": "function", "function": {"name": "get_weather"}},
                     {"type": "function", "function": {"name": "shell"}}]}
    if forced:
        doc["tool_choice"] = {"type": "function", "function": {"name": forced}}
    return "/v1/chat/completions", doc


def openai_responses(forced=None):
    doc = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "get_weather"},
                                                  {"type": "function", "name": "shell"}]}
    if forced:
        doc["tool_choice"] = {"type": "function", "name": forced}
    return "/v1/responses", doc


def anthropic(forced=None):
    doc = {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"name": "get_weather", "input_schema": {}}, {"name": "shell", "input_schema": {}}]}
    if forced:
        doc["tool_choice"] = {"type": "tool", "name": forced}
    return "/v1/messages", doc


def ollama(forced=None):
    doc = {"model": "l", "stream": False, "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"type": "function", "function": {"name": "get_weather"}},
                     {"type": "function", "function": {"name": "shell"}}]}
    return "/api/chat", doc


SHAPES = {"openai_chat": openai_chat, "openai_responses": openai_responses, "anthropic_messages": anthropic,
          "ollama_chat": ollama}
NAME_OF = {"openai_chat": lambda t: t["function"]["name"], "ollama_chat": lambda t: t["function"]["name"],
           "openai_responses": lambda t: t["name"], "anthropic_messages": lambda t: t["name"]}


def run(compiled, path, request, **rest):
    return run_exchange(compiled, {"path": path, "request": request, **rest})


# ---- params ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, problem", [
    ("{arguments: {f: {pattern: '(?=x)y'}}}", "RE2"),
    ("{arguments: {f: {type: object, oneOf: []}}}", "oneOf"),
    ("{arguments: {f: {type: text}}}", "type"),
    ("{tool_choice_modes: [sometimes]}", "tool_choice_modes"),
    ("{on_disallowed: drop}", "on_disallowed"),
    ("{alow: [x]}", "alow"),
])
def test_bad_params_fail_at_load_with_the_reason(params, problem):
    with pytest.raises(PolicyError, match=problem):
        tools_policy(params)


@pytest.mark.parametrize("value, problem", [
    ({"city": "Oslo"}, None),
    ({"city": "Oslo", "days": 7}, None),
    ({}, "`arguments.city` is required"),
    ({"city": "oslo"}, "`arguments.city` does not match the required pattern"),
    ({"city": "Llanfairpwll"}, "`arguments.city` is longer than 8 characters"),
    ({"city": 3}, "`arguments.city` must be of type string"),
    ({"city": "Oslo", "days": 8}, "`arguments.days` is above the maximum 7"),
    ({"city": "Oslo", "days": 0}, "`arguments.days` is below the minimum 1"),
    ({"city": "Oslo", "days": True}, "`arguments.days` must be of type integer"),
    ({"city": "Oslo", "days": 2.5}, "`arguments.days` must be of type integer"),
    ({"city": "Oslo", "cmd": "x"}, "`arguments` has a property the policy does not allow"),
    ([1], "`arguments` must be of type object"),
])
def test_argument_schema_reports_the_first_problem_without_the_value(value, problem):
    schema = ArgSchema.model_validate(orjson.loads(orjson.dumps({
        "type": "object", "required": ["city"], "additionalProperties": False,
        "properties": {"city": {"type": "string", "maxLength": 8, "pattern": "^[A-Z][a-z]+$"},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}}})))
    assert schema.problem(value) == problem


def test_enum_and_items_follow_json_equality():
    schema = ArgSchema.model_validate({"type": "array", "items": {"enum": [1, "a"]}})
    assert schema.problem([1, "a"]) is None
    assert schema.problem([True]) == "`arguments[0]` is not one of the allowed values"
    assert schema.problem([1.0]) is None  # JSON has one number type


# ---- request side ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_denied_tool_is_stripped_and_the_rest_kept(shape):
    path, request = SHAPES[shape]()
    result = run(STRIP, path, request)
    assert result.decision == "redact"
    assert [NAME_OF[shape](t) for t in result.request_body["tools"]] == ["get_weather"]
    assert result.request_body["messages" if "messages" in request else "input"] == \
        request["messages" if "messages" in request else "input"]
    assert result.fields["tools_stripped"] == ["shell"] and result.fields["tools_declared"] == 2


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_stripping_the_last_tool_drops_the_tool_options(shape):
    path, request = SHAPES[shape]()
    request["tools"] = request["tools"][1:]
    if shape != "ollama_chat":
        request["tool_choice"] = "auto" if shape != "anthropic_messages" else {"type": "auto"}
    result = run(STRIP, path, request)
    assert result.decision == "redact"
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(result.request_body)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_on_disallowed_deny_refuses_in_the_shapes_format(shape):
    path, request = SHAPES[shape]()
    result = run(DENY, path, request)
    assert (result.decision, result.status, result.code) == ("deny", 403, "tool_not_allowed")


@pytest.mark.parametrize("shape", ["openai_chat", "openai_responses", "anthropic_messages"])
def test_forcing_a_disallowed_tool_is_refused_even_when_stripping(shape):
    path, request = SHAPES[shape](forced="get_secret")
    assert run(STRIP, path, request).code == "tool_not_allowed"
    path, request = SHAPES[shape](forced="get_weather")
    assert run(STRIP, path, request).status is None


@pytest.mark.parametrize("shape, choice", [("openai_chat", "required"), ("openai_responses", "required"),
                                           ("anthropic_messages", {"type": "any"})])
def test_a_tool_choice_mode_outside_the_allowed_ones_is_refused(shape, choice):
    path, request = SHAPES[shape]()
    request["tool_choice"] = choice
    assert run(STRIP, path, request).code == "tool_choice_not_allowed"


def test_high_risk_tools_are_recorded_as_annotate():
    path, request = openai_chat()
    request["tools"] = [{"type": "function", "function": {"name": "send_email"}}]
    result = run(STRIP, path, request)
    assert result.decision == "annotate" and result.fields["tools_high_risk"] == ["send_email"]
    assert result.request_body is None  # nothing rewritten


def test_monitor_mode_records_but_neither_strips_nor_denies():
    monitor = tools_policy("{deny: [shell]}", mode="monitor")
    path, request = openai_chat(forced="shell")
    result = run(monitor, path, request)
    assert result.status is None and result.request_body is None
    assert result.fields["tools_declared"] == 2


def test_requests_without_tools_pass_untouched():
    result = run(STRIP, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert (result.decision, result.request_body) == ("allow", None)


# ---- buffered responses ---------------------------------------------------------------------------------
def chat_call(name, arguments):
    return {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}]}}]}


def responses_call(name, arguments):
    return {"output": [{"type": "function_call", "name": name, "arguments": orjson.dumps(arguments).decode()}]}


def anthropic_call(name, arguments):
    return {"content": [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "t", "name": name,
                                                          "input": arguments}]}


def ollama_call(name, arguments):
    return {"message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": name, "arguments": arguments}}]}, "done": True}


CALLS = {"openai_chat": chat_call, "openai_responses": responses_call, "anthropic_messages": anthropic_call,
         "ollama_chat": ollama_call}


@pytest.mark.parametrize("shape", sorted(CALLS))
@pytest.mark.parametrize("name, arguments, code", [
    ("get_weather", {"city": "Oslo"}, None),
    ("get_secret", {}, "tool_not_allowed"),
    ("send_email", {"to": "x"}, "tool_approval_required"),
])
def test_buffered_tool_calls_are_checked(shape, name, arguments, code):
    path, request = SHAPES[shape]()
    request["tools"].append({"type": "function", "function": {"name": "send_email"}, "name": "send_email"})
    result = run(STRIP, path, request, response=CALLS[shape](name, arguments))
    assert result.code == code
    if code is None:
        assert orjson.loads(result.client_bytes) == CALLS[shape](name, arguments)
    else:
        assert result.decision == "deny" and result.fields["status_sent"] == 403


@pytest.mark.parametrize("shape", sorted(CALLS))
def test_arguments_outside_the_schema_are_refused_without_quoting_them(shape):
    path, request = SHAPES[shape]()
    result = run(SCHEMA, path, request, response=CALLS[shape]("get_weather", {"city": "Oslo; rm -rf /"}))
    assert result.code == "tool_arguments_invalid"
    assert "rm -rf" not in result.fields["reason"] and "`arguments.city`" in result.fields["reason"]


def test_arguments_that_are_not_json_break_a_schema():
    path, request = openai_chat()
    response = chat_call("get_weather", {})
    response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"city": "Os'
    assert run(SCHEMA, path, request, response=response).code == "tool_arguments_invalid"


def test_a_tool_the_request_did_not_declare_is_not_named_to_the_client():
    path, request = openai_chat()
    result = run(SCHEMA, path, request, response=chat_call("exfiltrate_everything", {}))
    assert result.code == "tool_not_allowed"
    assert "exfiltrate" not in result.fields["reason"] and result.fields["tool_calls"] == ["<undeclared>"]


def test_monitor_mode_lets_a_refused_call_through_and_records_would_deny():
    monitor = tools_policy("{deny: [shell]}", mode="monitor")
    path, request = openai_chat()
    result = run(monitor, path, request, response=chat_call("shell", {"cmd": "ls"}))
    assert result.status is None and orjson.loads(result.client_bytes) == chat_call("shell", {"cmd": "ls"})
    assert result.decision == "allow"


# ---- tool results are untrusted input -------------------------------------------------------------------
@pytest.mark.parametrize("shape, doc", [
    ("openai_chat", {"messages": [{"role": "tool", "tool_call_id": "c", "content": "RESULT"}]}),
    ("ollama_chat", {"messages": [{"role": "tool", "content": "RESULT"}]}),
    ("anthropic_messages", {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "RESULT"}]}]}]}),
    ("openai_responses", {"input": [{"type": "function_call_output", "call_id": "c", "output": "RESULT"}]}),
])
def test_tool_results_are_segments_with_role_tool(shape, doc):
    from extproc import shapes

    parsed = shapes.all_shapes()[shape].parse_request({"model": "m", **doc})
    assert [(s.text, s.role) for s in parsed.segments] == [("RESULT", "tool")]

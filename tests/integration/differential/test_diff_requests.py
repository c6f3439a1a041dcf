"""Issue 13, request classes (a)-(c) and (e), through real Envoy with the strict policy, against real
parsers: Go's encoding/json into Ollama's structs, and FastAPI/pydantic the way vLLM reads. Each case: the
gateway refuses the request (4xx in the API's format), or the upstream's decoded view holds no planted
secret, no denied model and no denied tool."""

import base64
import json

import pytest
from harness import (
    ALLOWED_CLAUDE,
    ALLOWED_OLLAMA,
    ALLOWED_OPENAI,
    AWS_KEY,
    CARD,
    DENIED_MODEL,
    DENIED_TOOL,
    OPENAI_KEY,
    assert_mediated,
    fastapi_upstream,
    go_upstream,
    stack_fixture,
    upstream_view,
)

pytestmark = pytest.mark.integration
HI = {"role": "user", "content": "hello"}
SECRET_B64 = base64.b64encode(f"key {AWS_KEY}".encode()).decode()

go = stack_fixture(go_upstream)
py = stack_fixture(fastapi_upstream)


def ochat(**extra):
    return {"model": ALLOWED_OLLAMA, "messages": [HI], "stream": False, **extra}


def ogen(**extra):
    return {"model": ALLOWED_OLLAMA, "prompt": "hello", "stream": False, **extra}


def oai(**extra):
    return {"model": ALLOWED_OPENAI, "messages": [HI], **extra}


def tool(name, description="a tool"):
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object"}}}


def assistant_call(arguments):
    return {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "lookup",
                                                                              "arguments": arguments}}]}


def dumps(body) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def assert_no_denied_model(view):
    assert view is None or view["decoded"]["model"] != DENIED_MODEL, view


def assert_no_denied_tool(view):
    assert view is None or DENIED_TOOL not in [t["function"]["name"] for t in view["decoded"]["tools"]], view


# ---- positive controls: the harness sees what the upstream decoded, and a known field is scanned ----

def test_control_a_clean_request_reaches_the_go_upstream_decoded(go):
    stack, upstream = go
    view = upstream_view(stack, upstream, "/api/chat", dumps(ochat()))
    assert view["route"] == "ollama_chat" and view["decoded"]["model"] == ALLOWED_OLLAMA
    assert view["decoded"]["messages"][0]["content"] == "hello"


def test_control_a_clean_request_reaches_the_fastapi_upstream_decoded(py):
    stack, upstream = py
    view = upstream_view(stack, upstream, "/v1/chat/completions", dumps(oai()))
    assert view["decoded"]["model"] == ALLOWED_OPENAI and view["decoded"]["messages"][0]["content"] == "hello"


def test_control_a_secret_in_the_prompt_is_refused(go):
    stack, upstream = go
    body = ochat(messages=[{"role": "user", "content": f"use {AWS_KEY}"}])
    assert upstream_view(stack, upstream, "/api/chat", dumps(body)) is None


# ---- (a) a secret in a field the shape does not know, but the model server reads ----

GO_FIELDS = {
    "ollama-chat-options-stop": ("/api/chat", ochat(options={"stop": [AWS_KEY]})),
    "ollama-chat-options-nested": ("/api/chat", ochat(options={"x": {"y": [{"z": f"k {AWS_KEY}"}]}})),
    "ollama-chat-format-schema": ("/api/chat", ochat(format={"type": "object", "description": AWS_KEY})),
    "ollama-chat-images": ("/api/chat", ochat(messages=[{**HI, "images": [SECRET_B64]}])),
    "ollama-chat-thinking": ("/api/chat", ochat(messages=[{**HI, "thinking": f"use {AWS_KEY}"}])),
    "ollama-chat-tool-description": ("/api/chat", ochat(tools=[tool("lookup", f"key {OPENAI_KEY}")])),
    "ollama-chat-tool-call-arguments": ("/api/chat", ochat(messages=[HI, assistant_call({"key": AWS_KEY})])),
    "ollama-generate-system": ("/api/generate", ogen(system=f"key {AWS_KEY}")),
    "ollama-generate-template": ("/api/generate", ogen(template=f"{{{{ .Prompt }}}} {AWS_KEY}")),
    "ollama-generate-suffix": ("/api/generate", ogen(suffix=AWS_KEY)),
    "ollama-generate-images": ("/api/generate", ogen(images=[SECRET_B64])),
    "ollama-generate-format": ("/api/generate", ogen(format={"properties": {AWS_KEY: {"type": "string"}}})),
    "openai-chat-message-name": ("/v1/chat/completions", oai(messages=[{**HI, "name": AWS_KEY}])),
    "openai-chat-stop": ("/v1/chat/completions", oai(stop=[AWS_KEY])),
    "openai-chat-response-format": ("/v1/chat/completions",
                                    oai(response_format={"type": "json_schema", "json_schema": {
                                        "name": "x", "schema": {"description": AWS_KEY}}})),
    "openai-chat-user": ("/v1/chat/completions", oai(user=AWS_KEY)),
}


@pytest.mark.parametrize("case", GO_FIELDS)
def test_a_secret_in_a_field_go_decodes(go, case):
    path, body = GO_FIELDS[case]
    assert_mediated(*go, path, dumps(body))


PY_FIELDS = {
    "openai-chat-extra-top-level": ("/v1/chat/completions", oai(metadata={"note": f"key {AWS_KEY}"})),
    "openai-chat-extra-in-message": ("/v1/chat/completions", oai(messages=[{**HI, "x_note": AWS_KEY}])),
    "openai-chat-tool-description": ("/v1/chat/completions", oai(tools=[tool("lookup", f"use {OPENAI_KEY}")])),
    "openai-chat-content-part-extra": ("/v1/chat/completions", oai(messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_hint": AWS_KEY}]}])),
    "anthropic-tool-description": ("/v1/messages", {
        "model": ALLOWED_CLAUDE, "max_tokens": 16, "messages": [HI],
        "tools": [{"name": "lookup", "description": f"key {AWS_KEY}", "input_schema": {"type": "object"}}]}),
    "anthropic-tool-use-input": ("/v1/messages", {
        "model": ALLOWED_CLAUDE, "max_tokens": 16, "messages": [HI, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"key": AWS_KEY}}]}]}),
    "responses-function-call-arguments": ("/v1/responses", {
        "model": ALLOWED_OPENAI, "input": [{"type": "function_call", "call_id": "c1", "name": "lookup",
                                           "arguments": json.dumps({"key": AWS_KEY})}]}),
    "responses-tool-description": ("/v1/responses", {
        "model": ALLOWED_OPENAI, "input": "hi",
        "tools": [{"type": "function", "name": "lookup", "description": AWS_KEY, "parameters": {}}]}),
}


@pytest.mark.parametrize("case", PY_FIELDS)
def test_a_secret_in_a_field_pydantic_keeps(py, case):
    path, body = PY_FIELDS[case]
    assert_mediated(*py, path, dumps(body))


# ---- (b) case variants of known keys, as Go matches them (case-insensitive, ſ -> s, K (U+212A) -> k) ----

SECRET_MSG = f'[{{"role":"user","content":"use {AWS_KEY}"}}]'
CLEAN_MSG = '[{"role":"user","content":"hello"}]'
CASE_BODIES = {
    "Messages-after-messages": f'{{"model":"{ALLOWED_OLLAMA}","messages":{CLEAN_MSG},"Messages":{SECRET_MSG}}}',
    "MESSAGES-only": f'{{"model":"{ALLOWED_OLLAMA}","MESSAGES":{SECRET_MSG}}}',
    "long-s-messages": f'{{"model":"{ALLOWED_OLLAMA}","me\u017f\u017fages":{SECRET_MSG}}}',
    "Content-in-message": f'{{"model":"{ALLOWED_OLLAMA}","messages":[{{"role":"user","content":"hi",'
                          f'"Content":"{AWS_KEY}"}}]}}',
    "kelvin-thinking": f'{{"model":"{ALLOWED_OLLAMA}","messages":[{{"role":"user","content":"hi",'
                       f'"thin\u212aing":"{AWS_KEY}"}}]}}',
}


@pytest.mark.parametrize("case", CASE_BODIES)
def test_b_case_variant_keys_hide_no_secret(go, case):
    assert_mediated(*go, "/api/chat", CASE_BODIES[case].encode())


def test_b_long_s_system_on_generate(go):
    body = f'{{"model":"{ALLOWED_OLLAMA}","prompt":"hi","\u017fy\u017ftem":"key {AWS_KEY}"}}'
    assert_mediated(*go, "/api/generate", body.encode())


MODEL_BODIES = {
    "Model-after-model": f'{{"model":"{ALLOWED_OLLAMA}","Model":"{DENIED_MODEL}","messages":{CLEAN_MSG}}}',
    "MODEL-only": f'{{"MODEL":"{DENIED_MODEL}","messages":{CLEAN_MSG}}}',
    "mODEL-before-model": f'{{"mODEL":"{ALLOWED_OLLAMA}","model":"{DENIED_MODEL}","messages":{CLEAN_MSG}}}',
}


@pytest.mark.parametrize("case", MODEL_BODIES)
def test_b_case_variant_model_reaches_no_denied_model(go, case):
    assert_no_denied_model(upstream_view(*go, "/api/chat", MODEL_BODIES[case].encode()))


def test_b_case_variant_tools_declare_no_denied_tool(go):
    body = {"model": ALLOWED_OLLAMA, "messages": [HI], "tools": [tool("lookup")]}
    raw = dumps(body)[:-1] + b',"Tools":' + dumps([tool(DENIED_TOOL)]) + b"}"
    assert_no_denied_tool(upstream_view(*go, "/api/chat", raw))


# ---- (c) duplicate keys: Go and Python's json take the last one ----

DUPLICATES = {
    "model": f'{{"model":"{ALLOWED_OLLAMA}","model":"{DENIED_MODEL}","messages":{CLEAN_MSG}}}',
    "messages": f'{{"model":"{ALLOWED_OLLAMA}","messages":{CLEAN_MSG},"messages":{SECRET_MSG}}}',
    "content": f'{{"model":"{ALLOWED_OLLAMA}","messages":[{{"role":"user","content":"hi","content":"{AWS_KEY}"}}]}}',
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_c_duplicate_keys_on_go(go, case):
    assert_no_denied_model(assert_mediated(*go, "/api/chat", DUPLICATES[case].encode()))


def test_c_duplicate_model_on_pydantic(py):
    raw = f'{{"model":"{ALLOWED_OPENAI}","messages":{CLEAN_MSG},"model":"{DENIED_MODEL}"}}'
    assert_no_denied_model(upstream_view(*py, "/v1/chat/completions", raw.encode()))


def test_c_duplicate_tools_on_go(go):
    raw = (f'{{"model":"{ALLOWED_OPENAI}","messages":{CLEAN_MSG},"tools":{json.dumps([tool("lookup")])},'
           f'"tools":{json.dumps([tool(DENIED_TOOL)])}}}')
    assert_no_denied_tool(upstream_view(*go, "/v1/chat/completions", raw.encode()))


# ---- (e) card numbers written as JSON numbers ----

NUMBERS = {
    "ollama-tool-call-argument": ("go", "/api/chat", ochat(messages=[HI, assistant_call({"card": int(CARD)})])),
    "ollama-options": ("go", "/api/chat", ochat(options={"card": int(CARD)})),
    "ollama-format-enum": ("go", "/api/generate", ogen(format={"enum": [int(CARD)]})),
    "openai-extra-field": ("py", "/v1/chat/completions", oai(metadata={"card": int(CARD)})),
    "openai-exponent-spelling": ("py", "/v1/chat/completions", None),
}


@pytest.mark.parametrize("case", NUMBERS)
def test_e_card_numbers_as_json_numbers(go, py, case):
    where, path, body = NUMBERS[case]
    raw = dumps(body) if body is not None else (
        f'{{"model":"{ALLOWED_OPENAI}","messages":{CLEAN_MSG},"card":4.111111111111111e15}}'.encode())
    assert_mediated(*(go if where == "go" else py), path, raw, needles=(CARD,))

"""Issue 13, request classes (d) JSON two parsers may read differently (NaN, Infinity, a BOM, invalid UTF-8,
lone surrogates, deep nesting) and (f) paths that are not spelled the way the shapes match them but that a
lenient server routes to its chat handler; and a secret in the query string. A planted secret sits in the
prompt itself: the gateway must refuse the request (4xx in the API's format) or the upstream must not decode
the secret."""

from urllib.parse import unquote

import pytest
from harness import (
    ALLOWED_OLLAMA,
    ALLOWED_OPENAI,
    AWS_KEY,
    assert_mediated,
    fastapi_upstream,
    go_upstream,
    is_refusal,
    new_request_id,
    send,
    stack_fixture,
)

pytestmark = pytest.mark.integration
OAI_HEAD = f'{{"model":"{ALLOWED_OPENAI}","messages":[{{"role":"user","content":"use {AWS_KEY}'
OLLAMA_BODY = f'{{"model":"{ALLOWED_OLLAMA}","stream":false,"messages":[{{"role":"user","content":"use {AWS_KEY}"}}]}}'

go = stack_fixture(go_upstream)
py = stack_fixture(fastapi_upstream)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


ODD_BODIES = {
    "nan": (OAI_HEAD + '"}],"temperature":NaN}').encode(),
    "infinity": (OAI_HEAD + '"}],"temperature":Infinity}').encode(),
    "minus-infinity": (OAI_HEAD + '"}],"top_p":-Infinity}').encode(),
    "bom": b"\xef\xbb\xbf" + (OAI_HEAD + '"}]}').encode(),
    "invalid-utf8": (OAI_HEAD + " ").encode() + b"\xff\xfe" + b'"}]}',
    "lone-surrogate": (OAI_HEAD + ' \\ud800"}]}').encode(),
    "lone-surrogate-in-key": (OAI_HEAD + '"}],"x\\udc00":1}').encode(),
    "deep-nesting-2000": (OAI_HEAD + '"}],"x_meta":' + nested(2000) + "}").encode(),
    "deep-nesting-900": (OAI_HEAD + '"}],"x_meta":' + nested(900) + "}").encode(),
}


GO_REFUSES = {"nan", "infinity", "minus-infinity", "bom"}  # encoding/json rejects these: no case for Go
ODD_CASES = [("pydantic", case) for case in ODD_BODIES] + [("go", c) for c in ODD_BODIES if c not in GO_REFUSES]


@pytest.mark.parametrize(("parser", "case"), ODD_CASES, ids=[f"{p}-{c}" for p, c in ODD_CASES])
def test_d_json_two_parsers_read_differently(go, py, parser, case):
    assert_mediated(*(go if parser == "go" else py), "/v1/chat/completions", ODD_BODIES[case])


PATHS = {
    "ollama-trailing-slash": "/api/chat/",
    "ollama-uppercase": "/API/CHAT",
    "ollama-double-slash": "//api//chat",
    "ollama-percent-encoded": "/api/%63hat",
    "ollama-generate-query": "/api/generate?x=1",
    "openai-trailing-slash": "/v1/chat/completions/",
    "openai-double-slash": "/v1//chat/completions",
    "openai-uppercase": "/V1/Chat/Completions",
    "openai-dot-segment": "/v1/x/../chat/completions",
    "unknown-json-endpoint": "/v1/assistants/run",
}


@pytest.mark.parametrize("case", PATHS)
def test_f_path_spellings_with_a_json_body(go, case):
    body = OLLAMA_BODY if "generate" not in case else (
        f'{{"model":"{ALLOWED_OLLAMA}","prompt":"use {AWS_KEY}","stream":false}}')
    assert_mediated(*go, PATHS[case], body.encode())


@pytest.mark.parametrize("spelling", [AWS_KEY, "".join(f"%{ord(c):02X}" for c in AWS_KEY)])
def test_query_string_secret_reaches_no_upstream(go, spelling):
    stack, upstream = go
    request_id = new_request_id()
    body = f'{{"model":"{ALLOWED_OPENAI}","messages":[{{"role":"user","content":"hello"}}]}}'.encode()
    reply = send(stack, f"/v1/chat/completions?note={spelling}", body, request_id)
    if not is_refusal(reply):
        assert AWS_KEY not in unquote(upstream.wait_for(request_id)["query"]), reply

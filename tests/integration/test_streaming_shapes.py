"""Leak-free streaming through a real Envoy for each streaming wire format: OpenAI SSE, Ollama NDJSON,
Anthropic SSE. A key split across events reaches the client redacted, and the first event reaches the
client before the upstream has finished."""

import json

import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

KEY = "sk-proj-" + "Zq9Xw8Vu7Ts6Rp5On4Ml3Kj2Ih1Gf0Ed" + "abcdEFGH"
POLICY = """version: 1
rules:
  - id: secrets-out
    detector: secrets
    direction: response
    action: redact
  - id: deny-out
    detector: regex
    direction: response
    action: deny
    params: {patterns: [{label: forbidden_word, pattern: "FORBIDDEN", max_length: 9}]}
"""
PIECES = ["Hello! ", "Here is ", "the key: ", KEY[:11], KEY[11:27], KEY[27:], " — keep it ", "safe."]


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def sse(events):
    out = []
    for event in events:
        name = event.get("type")
        prefix = f"event: {name}\n" if name and "choices" not in event else ""
        out.append((prefix + "data: " + json.dumps(event) + "\n\n").encode())
    return out


def openai_records(pieces):
    chunks = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    return sse([{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, *chunks,
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]) + [b"data: [DONE]\n\n"]


def ollama_records(pieces):
    lines = [{"model": "llama3", "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
    lines.append({"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True,
                  "prompt_eval_count": 7, "eval_count": 9})
    return [(json.dumps(line) + "\n").encode() for line in lines]


def anthropic_records(pieces):
    events = [{"type": "message_start", "message": {"id": "m", "role": "assistant", "content": [],
                                                    "usage": {"input_tokens": 7, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
               for p in pieces]
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
               {"type": "message_stop"}]
    return sse(events)


def openai_text(body):
    return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                   for line in body.decode().split("\n") if line.startswith("data: {") and '"choices"' in line)


def ollama_text(body):
    return "".join(json.loads(line).get("message", {}).get("content", "") for line in body.decode().splitlines()
                   if line.strip())


def anthropic_text(body):
    return "".join(json.loads(line[6:]).get("delta", {}).get("text", "") for line in body.decode().split("\n")
                   if line.startswith("data: ") and "text_delta" in line)


CASES = {
    "openai_sse": ("/v1/chat/completions", "text/event-stream", openai_records, openai_text,
                   {"model": "m", "stream": True, "messages": [{"role": "user", "content": "key?"}]}),
    "ollama_ndjson": ("/api/chat", "application/x-ndjson", ollama_records, ollama_text,
                      {"model": "llama3", "messages": [{"role": "user", "content": "key?"}]}),
    "anthropic_sse": ("/v1/messages", "text/event-stream", anthropic_records, anthropic_text,
                      {"model": "claude", "max_tokens": 50, "stream": True,
                       "messages": [{"role": "user", "content": "key?"}]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_key_is_redacted_and_the_stream_still_streams(stack, upstream, case):
    path, content_type, make, text_of, payload = CASES[case]
    upstream.respond(path, headers={"content-type": content_type}, chunks=make(PIECES), chunk_delay=0.2)
    reply, pieces = stack.stream(path, payload)
    assert reply.status == 200
    assert KEY[:12] not in reply.body.decode() and KEY[-10:] not in reply.body.decode()
    assert text_of(reply.body) == "Hello! Here is the key: [OPENAI_API_KEY] — keep it safe."
    assert pieces[0][0] < upstream.chunk_times[path][-1], "first bytes must arrive before the upstream finishes"
    assert "Hello!" in text_of(b"".join(p for t, p in pieces if t < upstream.chunk_times[path][-1]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_deny_mid_stream_ends_with_what_the_shapes_clients_show(stack, upstream, case):
    """OpenAI: the notice chunk, then the error event; Anthropic: the error event; Ollama: a last `done: true`
    line carrying the notice (stream_deny_notice: auto)."""
    path, content_type, make, _text_of, payload = CASES[case]
    upstream.respond(path, headers={"content-type": content_type},
                     chunks=make(["fine ", "then FORB", "IDDEN text", " more"]), chunk_delay=0.05)
    reply, _ = stack.stream(path, payload, {"x-request-id": f"deny-{case}"})
    body = reply.body.decode()
    assert reply.status == 200 and "FORBIDDEN" not in body and " more" not in body
    if case == "openai_sse":
        assert '"error"' in body and "policy_violation" in body
    elif case == "anthropic_sse":
        assert "event: error" in body and "permission_error" in body
    else:
        last = json.loads(body.strip().splitlines()[-1])
        assert last["done"] is True and "stopped by policy" in last["message"]["content"]
    record = stack.audit_for(f"deny-{case}")
    assert record["decision"] == "deny" and record["ended_stream_with_error"] is True

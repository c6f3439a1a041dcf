"""A stream ended by a deny is visible to the user, through real Envoy and real clients: Ollama's reader gets a
last `done: true` line saying so (Open WebUI drops `{"error"}` lines); the official openai SDK yields the
notice chunk to the application and then raises on the error event."""

import json

import openai
import pytest
from conftest import make_stack

pytestmark = pytest.mark.integration

KEY = "sk-proj-" + "Zq9Xw8Vu7Ts6Rp5On4Ml3Kj2Ih1Gf0Ed" + "abcdEFGH"
POLICY = """version: 1
rules:
  - id: no-keys-out
    detector: secrets
    direction: response
    action: deny
"""


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, upstream):
    return make_stack(request, tmp_path_factory, upstream, POLICY)


def test_ollama_ndjson_ends_with_a_done_line_the_user_sees(stack, upstream):
    lines = [{"model": "llama3", "message": {"role": "assistant", "content": piece}, "done": False}
             for piece in ["Here: ", KEY[:10], KEY[10:], " bye"]]
    upstream.respond("/api/chat", headers={"content-type": "application/x-ndjson"},
                     chunks=[(json.dumps(line) + "\n").encode() for line in lines])
    reply, _ = stack.stream("/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "k?"}]})
    records = [json.loads(line) for line in reply.body.decode().splitlines() if line.strip()]
    assert records[-1]["done"] is True and "stopped by policy" in records[-1]["message"]["content"]
    assert not any("error" in record for record in records)
    assert KEY[:10] not in reply.body.decode()


def test_the_openai_sdk_yields_the_notice_then_raises(stack, upstream):
    events = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
              for piece in ["Here: ", KEY[:10], KEY[10:]]]
    upstream.respond("/v1/chat/completions", headers={"content-type": "text/event-stream"},
                     chunks=[f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"])
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{stack.listen_port}/v1", api_key="k", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "k?"}],
                                                    stream=True):
            seen.append(chunk.choices[0].delta.content or "")
    assert "stopped by policy" in "".join(seen) and KEY[:10] not in "".join(seen)
    assert "no-keys-out" in str(raised.value)

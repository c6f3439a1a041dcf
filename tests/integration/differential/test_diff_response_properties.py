"""Issue 13, property tests on responses: a planted secret in model output, split across 1-4 stream events at
random points, its characters written with random `\\uXXXX` escapes in the event's JSON, as answer text or
inside tool-call arguments (JSON inside a JSON string, with its own random escapes). Through real Envoy with
the strict policy (secrets and card numbers redacted in output); the client is the official `openai` or
`anthropic` SDK or a line-based NDJSON reader. The application's view (events, joined text, parsed tool
arguments) must hold no planted secret, and tool arguments must still parse."""

import json
import os

import pytest
from clients import (
    JSON,
    SSE,
    anthropic_events,
    anthropic_view,
    chunk,
    completion,
    ollama_line,
    ollama_view,
    openai_view,
    sse,
    text_block,
    tool_block,
)
from harness import AWS_KEY, CARD, OPENAI_KEY, found, go_upstream, stack_fixture
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration
SECRETS = (AWS_KEY, OPENAI_KEY, CARD)
SETTINGS = settings(max_examples=int(os.environ.get("EXTPROC_DIFF_EXAMPLES", "20")), deadline=None,
                    derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

go = stack_fixture(go_upstream)


def literal(draw, text: str) -> str:
    """`text` as a JSON string literal, each character escaped as \\uXXXX or not, at random."""
    flags = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return '"' + "".join(f"\\u{ord(c):04x}" if f else json.dumps(c)[1:-1] for c, f in zip(text, flags)) + '"'


def split(draw, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, len(text) - 1), max_size=3)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def planted(draw, inner_json: bool):
    """(secret, pieces, literal of each piece): the text, or a tool-arguments JSON holding it, split up."""
    secret = draw(st.sampled_from(SECRETS))
    text = draw(st.sampled_from(["{}", "key {} ok", "a\n{}"])).format(secret)
    if inner_json:
        text = '{"q": ' + literal(draw, text) + "}"
    pieces = split(draw, text)
    return secret, pieces, [literal(draw, p) for p in pieces]


def fill(chunks: list[bytes], literals: list[str]) -> list[bytes]:
    """Replace each placeholder string "@@Pn@@" in the encoded events by its hand-written literal."""
    out = []
    for data in chunks:
        for index, text in enumerate(literals):
            data = data.replace(f'"@@P{index}@@"'.encode(), text.encode())
        out.append(data)
    return out


def holders(count: int) -> list[str]:
    return [f"@@P{i}@@" for i in range(count)]


def openai_stream(draw, tool: bool):
    secret, pieces, literals = planted(draw, tool)
    if tool:
        head = chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                           "function": {"name": "lookup", "arguments": ""}}]})
        body = [chunk({"tool_calls": [{"index": 0, "function": {"arguments": h}}]}) for h in holders(len(pieces))]
    else:
        head, body = chunk({"role": "assistant", "content": ""}), [chunk({"content": h}) for h in holders(len(pieces))]
    events = sse([head, *body, chunk({}, "tool_calls" if tool else "stop"), b"data: [DONE]\n\n"])
    return secret, fill(events, literals)


@pytest.mark.parametrize("tool", [False, True], ids=["text", "tool-arguments"])
@SETTINGS
@given(data=st.data())
def test_property_openai_stream(go, tool, data):
    secret, chunks = openai_stream(data.draw, tool)
    view = openai_view(go, chunks, stream=True, content_type=SSE, tools=tool)
    assert not found(view, (secret,)), view


@pytest.mark.parametrize("tool", [False, True], ids=["text", "tool-arguments"])
@SETTINGS
@given(data=st.data())
def test_property_openai_buffered(go, tool, data):
    secret, pieces, literals = planted(data.draw, tool)
    whole = literals[0] if len(pieces) == 1 else literal(data.draw, "".join(pieces))
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "@@P0@@"}}
    message = {"content": None, "tool_calls": [call]} if tool else {"content": "@@P0@@"}
    view = openai_view(go, fill([completion(message)], [whole]), stream=False, content_type=JSON, tools=tool)
    assert not found(view, (secret,)), view


@pytest.mark.parametrize("tool", [False, True], ids=["text", "input-json"])
@SETTINGS
@given(data=st.data())
def test_property_anthropic_stream(go, tool, data):
    secret, pieces, literals = planted(data.draw, tool)
    blocks = (tool_block if tool else text_block)(holders(len(pieces)))
    view = anthropic_view(go, fill(anthropic_events(blocks), literals))
    assert not found(view, (secret,)), view


@pytest.mark.parametrize("field", ["content", "thinking"])
@SETTINGS
@given(data=st.data())
def test_property_ollama_ndjson(go, field, data):
    secret, pieces, literals = planted(data.draw, False)
    lines = [(json.dumps(ollama_line(h, field=field)) + "\n").encode() for h in holders(len(pieces))]
    view = ollama_view(go, fill(lines, literals) + [(json.dumps(ollama_line("", True)) + "\n").encode()])
    assert not found(view, (secret,)), view

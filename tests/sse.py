"""Build and read OpenAI-style SSE streams in tests."""

import orjson


def openai_stream(pieces: list[str], index: int = 0) -> bytes:
    events = [{"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"role": "assistant"}}]}]
    for piece in pieces:
        events.append({"id": "c1", "object": "chat.completion.chunk",
                       "choices": [{"index": index, "delta": {"content": piece}, "finish_reason": None}]})
    events.append({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {},
                                                                              "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def openai_text(stream: bytes) -> str:
    """Reassemble the assistant text the way a client does."""
    text = []
    for block in stream.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                event = orjson.loads(line[6:])
                for choice in event.get("choices", []):
                    text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def openai_errors(stream: bytes) -> list[dict]:
    out = []
    for line in stream.split(b"\n"):
        if line.startswith(b"data: {"):
            event = orjson.loads(line[6:])
            if "error" in event:
                out.append(event["error"])
    return out

"""Microbenchmark of the stream framers: microseconds per chunk on a 200-event OpenAI-style stream.

Run: .venv/bin/python bench/bench_framing.py
"""

from __future__ import annotations

import json
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from extproc.framing import framer_for

EVENTS = 200
REPEATS = 7


def openai_events() -> list[bytes]:
    """200 chat.completion.chunk payloads, the last one being [DONE]."""
    events = []
    for i in range(EVENTS - 1):
        chunk = {"id": "chatcmpl-9x8y7z", "object": "chat.completion.chunk", "created": 1718000000,
                 "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": f" word{i}"},
                                                      "finish_reason": None}]}
        events.append(json.dumps(chunk, separators=(",", ":")).encode())
    return events + [b"[DONE]"]


def frame(kind: str, payloads: list[bytes]) -> list[bytes]:
    if kind == "sse":
        return [b"data: " + p + b"\n\n" for p in payloads]
    return [p + b"\n" for p in payloads if p != b"[DONE]"]


def chunked(records: list[bytes], per_chunk: int) -> list[bytes]:
    return [b"".join(records[i : i + per_chunk]) for i in range(0, len(records), per_chunk)]


def us_per_chunk(kind: str, chunks: list[bytes]) -> float:
    def run() -> None:
        framer = framer_for(kind)
        for chunk in chunks:
            framer.feed(chunk)
        framer.flush()

    number = 50
    best = min(timeit.repeat(run, number=number, repeat=REPEATS))
    return best / number / len(chunks) * 1e6


def main() -> None:
    payloads = openai_events()
    print(f"{'framer':8} {'events/chunk':>12} {'chunks':>7} {'bytes/chunk':>12} {'us/chunk':>9}")
    for kind in ("sse", "ndjson"):
        records = frame(kind, payloads)
        for per_chunk in (1, 3):
            chunks = chunked(records, per_chunk)
            size = sum(map(len, chunks)) / len(chunks)
            micros = us_per_chunk(kind, chunks)
            print(f"{kind:8} {per_chunk:>12} {len(chunks):>7} {size:>12.0f} {micros:>9.2f}")


if __name__ == "__main__":
    main()

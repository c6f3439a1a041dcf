"""SSE / NDJSON framers fed arbitrary bytes at arbitrary split points: no byte lost, added or reordered, and
the records do not depend on where the chunks were cut."""

import atheris
from _harness import run

with atheris.instrument_imports(include=["extproc"]):
    from extproc.framing import NdjsonFramer, SseFramer


def frame(framer_class, chunks: list[bytes]) -> list[tuple[bytes, bytes | None, str | None]]:
    framer = framer_class()
    records = []
    for chunk in chunks:
        records += framer.feed(chunk)
    records += framer.flush()
    return [(r.raw, r.data, r.event) for r in records]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 8), 0, 4096))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    for framer_class in (SseFramer, NdjsonFramer):
        split = frame(framer_class, chunks)
        if b"".join(raw for raw, _, _ in split) != body:
            raise AssertionError(f"{framer_class.__name__}: records do not give back the input")
        if split != frame(framer_class, [body]):
            raise AssertionError(f"{framer_class.__name__}: records depend on the chunk boundaries")


if __name__ == "__main__":
    run(test_one_input)

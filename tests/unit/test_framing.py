"""Stream framers: no byte lost or changed, and the same records whatever the chunking."""

import itertools
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.framing import NdjsonFramer, Record, SseFramer, framer_for

UNICODE = "é日本🎉".encode()

# (raw, data, event) for each record: CRLF, CR-only, LF, comments, event lines, multi-line data, UTF-8.
SSE_RECORDS = [
    (b": keep-alive\r\n\r\n", None, None),
    (b'event: message_start\r\ndata: {"type":"start"}\r\n\r\n', b'{"type":"start"}', "message_start"),
    (b'id: 7\rretry: 1000\rdata: {"t":"' + UNICODE + b'"}\r\r', b'{"t":"' + UNICODE + b'"}', None),
    (b"data: line one\ndata:line two\ndata\ndata:  two spaces\n\n", b"line one\nline two\n\n two spaces",
     None),
    (b"event: caf\xc3\xa9\r\n: comment inside\r\ndata: x\r\n\r\n", b"x", "café"),
    (b": ping\n\n", None, None),
    (b"\n", None, None),  # a stray blank line is a record of its own
    (b"event: ping\n\r\n", None, "ping"),
    (b"data: " + UNICODE + b"\r\r\n", UNICODE, None),
    (b"data: [DONE]\n\n", b"[DONE]", None),
]
# Unterminated: only flush() returns it.
SSE_TAIL = (b'data: {"tail":"' + UNICODE, b'{"tail":"' + UNICODE, None)
SSE_STREAM = b"".join(raw for raw, _, _ in SSE_RECORDS) + SSE_TAIL[0]
SSE_EXPECTED = [Record(*r) for r in SSE_RECORDS + [SSE_TAIL]]

NDJSON_LINES = [b'{"a":"' + UNICODE + b'"}', b"", b'{"b":2}', b"", b'{"c":[1,2]}']
NDJSON_WITH_NEWLINE = b'{"a":"' + UNICODE + b'"}\n\r\n{"b":2}\r\n\n{"c":[1,2]}\n'
NDJSON_WITHOUT_NEWLINE = NDJSON_WITH_NEWLINE[:-1]
NDJSON_EXPECTED = [
    Record(b'{"a":"' + UNICODE + b'"}\n', b'{"a":"' + UNICODE + b'"}'),
    Record(b"\r\n", None),
    Record(b'{"b":2}\r\n', b'{"b":2}'),
    Record(b"\n", None),
    Record(b'{"c":[1,2]}\n', b'{"c":[1,2]}'),
]

STREAMS = [
    ("sse", SSE_STREAM, SSE_EXPECTED),
    ("ndjson", NDJSON_WITH_NEWLINE, NDJSON_EXPECTED),
    ("ndjson", NDJSON_WITHOUT_NEWLINE, NDJSON_EXPECTED[:-1] + [Record(b'{"c":[1,2]}', b'{"c":[1,2]}')]),
]
STREAM_IDS = ["sse", "ndjson-trailing-newline", "ndjson-no-trailing-newline"]


def run(kind: str, chunks: list[bytes]) -> list[Record]:
    framer = framer_for(kind)
    records = [record for chunk in chunks for record in framer.feed(chunk)]
    return records + framer.flush()


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def raw_of(records: list[Record]) -> bytes:
    return b"".join(r.raw for r in records)


# --- independent reference parsers: slow and obvious, applied to the whole input at once -------------------


def reference_lines(data: bytes) -> list[tuple[bytes, bytes]]:
    """(content, content + line end) per line; the last line may have no line end."""
    lines, i = [], 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] not in b"\r\n":
            j += 1
        k = j + 2 if data[j : j + 2] == b"\r\n" else min(j + 1, len(data))
        lines.append((data[i:j], data[i:k]))
        i = k
    return lines


def reference_sse(data: bytes) -> list[Record]:
    records, raw, datas, event = [], b"", [], None

    def close() -> None:
        records.append(Record(raw, b"\n".join(datas) if datas else None, event))

    for content, line in reference_lines(data):
        raw += line
        if content == b"" and line != b"":
            close()
            raw, datas, event = b"", [], None
            continue
        name, _, value = content.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            datas.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if raw:
        close()
    return records


def reference_ndjson(data: bytes) -> list[Record]:
    records = []
    for raw in data.split(b"\n"):
        line = raw.removesuffix(b"\r")
        records.append(Record(raw + b"\n", line or None))
    if data.endswith(b"\n") or not data:
        records.pop()  # split() leaves an empty piece after the last newline
    else:
        records[-1].raw = records[-1].raw[:-1]
    return records


REFERENCE = {"sse": reference_sse, "ndjson": reference_ndjson}


# --- fixed samples ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_whole_stream_gives_the_expected_records(kind, stream, expected):
    assert run(kind, [stream]) == expected
    assert REFERENCE[kind](stream) == expected


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_every_split_point(kind, stream, expected):
    for point in range(len(stream) + 1):
        records = run(kind, split_at(stream, [point]))
        assert records == expected, f"split at {point}: {stream[:point]!r} | {stream[point:]!r}"


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_every_pair_of_split_points(kind, stream, expected):
    for a in range(1, len(stream)):
        for b in range(a, len(stream), 3):
            assert run(kind, split_at(stream, [a, b])) == expected, (a, b)


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_byte_by_byte(kind, stream, expected):
    assert run(kind, [stream[i : i + 1] for i in range(len(stream))]) == expected


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_one_record_per_chunk(kind, stream, expected):
    assert run(kind, [r.raw for r in expected]) == expected


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_random_splits(kind, stream, expected):
    rng = random.Random(20240611)
    for _ in range(300):
        points = [rng.randrange(len(stream) + 1) for _ in range(rng.randrange(1, 12))]
        assert run(kind, split_at(stream, points)) == expected, sorted(points)


def test_empty_chunks_change_nothing():
    chunks = [b"", SSE_STREAM[:40], b"", b"", SSE_STREAM[40:], b""]
    assert run("sse", chunks) == SSE_EXPECTED


# --- SSE details --------------------------------------------------------------------------------------------


def test_sse_fields():
    framer = SseFramer()
    assert framer.feed(b"data: [DONE]\n\n") == [Record(b"data: [DONE]\n\n", b"[DONE]")]
    assert framer.feed(b": ping\n\n") == [Record(b": ping\n\n", None)]
    assert framer.feed(b"data:\n\n") == [Record(b"data:\n\n", b"")]  # an empty data field is still data
    assert framer.feed(b"event: \xff\xfe\ndata: x\n\n")[0].event == "\ufffd\ufffd"
    assert framer.feed(b"event: a\nevent: b\ndata: x\n\n")[0].event == "b"
    assert framer.feed(b"id: 3\nretry: 10\nfoo: bar\n\n") == [Record(b"id: 3\nretry: 10\nfoo: bar\n\n", None)]


def test_chunk_ending_in_cr_waits_for_the_next_byte():
    framer = SseFramer()
    assert framer.feed(b"data: a\r\n\r") == []  # the blank line may still turn out to be "\r\n"
    assert framer.pending == len(b"data: a\r\n\r")
    assert framer.feed(b"\ndata: b\r") == [Record(b"data: a\r\n\r\n", b"a")]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"data: c\n\n") == [Record(b"data: b\r\r", b"b"), Record(b"data: c\n\n", b"c")]
    assert framer.pending == 0


def test_flush_settles_a_trailing_cr():
    framer = SseFramer()
    assert framer.feed(b"data: a\n\r") == []
    assert framer.flush() == [Record(b"data: a\n\r", b"a")]
    assert framer.pending == 0


def test_flush_returns_the_partial_record():
    framer = SseFramer()
    assert framer.feed(b'data: {"a":1}\n\nevent: e\ndata: {"b"') == [Record(b'data: {"a":1}\n\n', b'{"a":1}')]
    assert framer.flush() == [Record(b'event: e\ndata: {"b"', b'{"b"', "e")]
    assert framer.flush() == []


def test_line_end_styles_mixed_in_one_chunk():
    ends = (b"\n\n", b"\r\n\r\n", b"\n\r\n", b"\r\r")
    records = [b"data: %d%s" % (i, end) for i in range(30) for end in ends]
    framer = SseFramer()
    assert framer.feed(b"".join(records)) == [Record(raw, raw[6:].split(b"\r")[0].split(b"\n")[0])
                                              for raw in records[:-1]]
    assert framer.flush() == [Record(records[-1], b"29")]  # its final "\r\n" was still undecided


# --- NDJSON details -----------------------------------------------------------------------------------------


def test_ndjson_flush_returns_the_partial_line():
    framer = NdjsonFramer()
    assert framer.feed(b'{"a":1}\n{"b"') == [Record(b'{"a":1}\n', b'{"a":1}')]
    assert framer.pending == 4
    assert framer.flush() == [Record(b'{"b"', b'{"b"')]
    assert framer.pending == 0


def test_ndjson_lone_cr_is_not_a_line_end():
    assert run("ndjson", [b"a\rb\n"]) == [Record(b"a\rb\n", b"a\rb")]


# --- pending accounting and cost ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_pending_counts_the_bytes_held(kind):
    framer = framer_for(kind)
    assert framer.pending == 0
    framer.feed(b"data: a")
    assert framer.pending == 7
    framer.feed(b"bc")
    assert framer.pending == 9
    framer.feed(b"\n\ndata: next" if kind == "sse" else b"\ndata: next")
    assert framer.pending == len(b"data: next")
    framer.flush()
    assert framer.pending == 0


@pytest.mark.parametrize(("kind", "stream", "expected"), STREAMS, ids=STREAM_IDS)
def test_pending_is_the_unreturned_suffix(kind, stream, expected):
    framer = framer_for(kind)
    returned = 0
    for i in range(len(stream)):
        returned += len(raw_of(framer.feed(stream[i : i + 1])))
        assert returned + framer.pending == i + 1


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
def test_long_record_in_small_chunks_costs_linear_time(kind):
    framer = framer_for(kind)
    piece = b"x" * 255 + b"\r"  # a lone "\r" keeps the SSE framer re-checking every chunk boundary
    started = time.perf_counter()
    for _ in range(8192):  # 2 MiB: re-copying or re-scanning the held bytes each time would take many seconds
        assert framer.feed(piece) == []
    assert framer.pending == 8192 * 256
    assert time.perf_counter() - started < 3.0
    assert raw_of(framer.flush()) == piece * 8192


def test_framer_for():
    assert isinstance(framer_for("sse"), SseFramer)
    assert isinstance(framer_for("ndjson"), NdjsonFramer)
    assert framer_for("sse") is not framer_for("sse")
    with pytest.raises(ValueError, match="unknown stream framing"):
        framer_for("xml")


# --- properties over generated streams ----------------------------------------------------------------------

# Pieces chosen to collide: every line end style, field names, comments, and halves of multi-byte characters.
SSE_PIECES = [b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r", b"data: ", b"data:", b"data", b"event: ", b": c",
              b"id: 1", b"x", b" ", b"[DONE]", b'{"k":"v"}', "é".encode(), "🎉".encode()[:2], "🎉".encode()[2:]]
NDJSON_PIECES = [b"\n", b"\r", b"\r\n", b'{"k":"', "日".encode(), b'"}', b" ", b"\xf0\x9f", b"[1,2]"]


def stream_of(pieces: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.lists(st.sampled_from(pieces), max_size=60).map(b"".join), st.binary(max_size=120))


def chunkings(data: bytes, draw) -> list[list[bytes]]:
    points = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return [split_at(data, points), [data[i : i + 1] for i in range(len(data))], [data]]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["sse", "ndjson"]))
def test_raw_is_preserved_and_records_do_not_depend_on_chunking(data, kind):
    stream = data.draw(stream_of(SSE_PIECES if kind == "sse" else NDJSON_PIECES))
    expected = REFERENCE[kind](stream)
    for chunks in chunkings(stream, data.draw):
        records = run(kind, chunks)
        assert raw_of(records) == stream
        assert records == expected

"""Incremental framers that cut a streamed response body into records.

A framer is fed the body chunk by chunk, however the network happened to split it, and returns each record
as soon as it is complete: an SSE event (`SseFramer`) or an NDJSON line (`NdjsonFramer`). `flush()` at the
end of the stream returns whatever is left as one last record. Two guarantees, whatever the chunking:

* nothing is lost or changed: joining the `raw` of every record returned gives back the input exactly;
* the records are the same as if the whole body had arrived in one chunk.

Unfinished bytes are held in a bytearray and only the new bytes are searched on each feed, so a large record
arriving in many small chunks costs linear, not quadratic, time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Record:
    """One complete streamed record.

    `raw` is the exact bytes of the record as received, including its terminator, so an unchanged record
    is forwarded byte-for-byte. `data` is the SSE `data` field value (multiple data lines joined with b"\\n")
    or the NDJSON line without its newline; None for SSE comments / keep-alives / records without data.
    `event` is the SSE `event` field, if any.
    """

    raw: bytes
    data: bytes | None
    event: str | None = None


_LF = 0x0A
_CR = 0x0D

# A line end directly followed by another one, i.e. a blank line. "\r\n" is a single line end, so these
# three pairs are exactly the ways a blank line can follow a line; the blank line's own line end is at +1.
_LINE_END_PAIRS = (b"\n\n", b"\n\r", b"\r\r")


class _Framer:
    """Buffering shared by the framers; subclasses say where a record ends and how to read it."""

    __slots__ = ("_held", "_scan")

    def __init__(self) -> None:
        self._held = bytearray()  # bytes of the record(s) not complete yet
        self._scan = 0  # offset in `_held` before which no record end can start

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a record."""
        return len(self._held)

    def feed(self, chunk: bytes) -> list[Record]:
        """The records completed by `chunk`, in order."""
        return self._take(chunk, final=False)

    def flush(self) -> list[Record]:
        """At end of stream: the remaining records, the last one possibly unterminated."""
        records = self._take(b"", final=True)
        if self._held:
            records.append(self._record(bytes(self._held)))
            self._held.clear()
            self._scan = 0
        return records

    def _take(self, chunk: bytes, final: bool) -> list[Record]:
        held = self._held
        data: bytes | bytearray
        if held:
            held += chunk
            data = held
        else:
            data = chunk  # the common case: nothing held, so read the chunk in place without copying
        records = []
        start, scan, size = 0, self._scan, len(data)
        while start < size:
            end = self._end(data, start, max(scan, start), final)
            if end < 0:
                break
            records.append(self._record(bytes(data[start:end])))
            start = end
        if data is held:
            del held[:start]  # cheap: CPython drops a bytearray's head by moving its start pointer
        else:
            held += chunk[start:]
        # A record end is at most two bytes long and may straddle the next chunk: search those bytes again.
        self._scan = max(0, len(held) - 2)
        return records

    def _end(self, data: bytes | bytearray, start: int, scan: int, final: bool) -> int:
        """Offset just past the record starting at `start`, or -1 if it is not complete yet."""
        raise NotImplementedError

    def _record(self, raw: bytes) -> Record:
        raise NotImplementedError


class SseFramer(_Framer):
    """Server-sent events (WHATWG event-stream): a record is every line up to and including a blank line."""

    __slots__ = ("_pairs",)

    def __init__(self) -> None:
        super().__init__()
        self._pairs: tuple[bytes, ...] = _LINE_END_PAIRS

    def _end(self, data: bytes | bytearray, start: int, scan: int, final: bool) -> int:
        if data[start] in (_LF, _CR):
            return _line_end(data, start, final)  # a blank line right away is a record of its own
        found = self._first_pair(data, scan)
        return -1 if found < 0 else _line_end(data, found + 1, final)

    def _first_pair(self, data: bytes | bytearray, scan: int) -> int:
        """Offset of the first line-end pair at or after `scan`, or -1."""
        pairs = self._pairs
        first = data.find(pairs[0], scan)
        if first >= 0 and pairs[0] == b"\n\n" and data.find(b"\r", scan, first) < 0:
            return first  # the usual LF-only stream: any other pair before this one would need a "\r"
        limit, winner = (len(data), None) if first < 0 else (first + 1, pairs[0])
        for pair in pairs[1:]:
            at = data.find(pair, scan, limit)
            if at >= 0:
                first, limit, winner = at, at + 1, pair  # later searches only need to look before this hit
        # A stream keeps one line-end style, so search for the winning pair first next time: the other
        # searches then stop at this record's end instead of running on to the end of the data.
        if winner is not None and winner is not pairs[0]:
            self._pairs = (winner,) + tuple(p for p in pairs if p is not winner)
        return first

    def _record(self, raw: bytes) -> Record:
        data_lines = []
        event = None
        for line in raw.splitlines():  # bytes.splitlines splits on exactly \r\n, \n and \r
            name, _, value = line.partition(b":")  # a comment has an empty name, so it is skipped below
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data_lines.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
        return Record(raw, b"\n".join(data_lines) if data_lines else None, event)


class NdjsonFramer(_Framer):
    """Newline-delimited JSON: a record is one line with its "\\n" (or "\\r\\n")."""

    __slots__ = ()

    def _end(self, data: bytes | bytearray, start: int, scan: int, final: bool) -> int:
        newline = data.find(b"\n", scan)
        return -1 if newline < 0 else newline + 1

    def _record(self, raw: bytes) -> Record:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        return Record(raw, line or None)


def _line_end(data: bytes | bytearray, i: int, final: bool) -> int:
    """Offset just past the line end starting at `data[i]`.

    A "\\r" that is the last byte seen may be the first half of "\\r\\n": -1 (wait for more) unless the
    stream is over.
    """
    if data[i] == _LF:
        return i + 1
    if i + 1 < len(data):
        return i + 2 if data[i + 1] == _LF else i + 1
    return i + 1 if final else -1


class TextFramer(_Framer):
    """A body that is neither SSE nor JSON (plain text, HTML, a lie in content-type): every chunk is one
    record of raw text, cut at the last whole UTF-8 character so no character is split between records."""

    __slots__ = ()

    def _end(self, data: bytes | bytearray, start: int, scan: int, final: bool) -> int:
        if final:
            return len(data)
        end = len(data)
        back = 0
        while back < 3 and end - back - 1 >= start and (data[end - back - 1] & 0xC0) == 0x80:
            back += 1  # continuation bytes at the end: is their lead byte complete?
        lead = end - back - 1
        if lead >= start and data[lead] >= 0xC0 and back < _utf8_length(data[lead]) - 1:
            end = lead
        return end if end > start else -1

    def _record(self, raw: bytes) -> Record:
        return Record(raw, None)


def _utf8_length(lead: int) -> int:
    return 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
SNIFF_BYTES = 7


def sniff(head: bytes, final: bool = False) -> str | None:
    """The framing of a response body judged by its first bytes, whatever its content-type says: "sse",
    "ndjson" (a JSON document or JSON lines: both start with `{` or `[`) or "text"; None while too few bytes
    have arrived to tell."""
    start = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    start = start.lstrip(b" \t\r\n")[:SNIFF_BYTES]
    if not start:
        return "text" if final else None
    if start[:1] in (b"{", b"["):
        return "ndjson"
    if any(start.startswith(field) for field in _SSE_FIELDS):
        return "sse"
    if not final and any(field.startswith(start) for field in _SSE_FIELDS):
        return None
    return "text"


_FRAMERS: dict[str, type[_Framer]] = {"sse": SseFramer, "ndjson": NdjsonFramer, "text": TextFramer}


def framer_for(kind: str) -> _Framer:
    """A new framer for a body framing kind: "sse", "ndjson" or "text"."""
    try:
        return _FRAMERS[kind]()
    except KeyError:
        raise ValueError(f"unknown stream framing {kind!r}; expected one of {sorted(_FRAMERS)}") from None

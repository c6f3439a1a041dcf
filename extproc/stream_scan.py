"""Leak-free scanning of streamed responses that still streams.

Records (SSE events / NDJSON lines) are decoded by the shape into text deltas keyed by choice or content
block. For each key we keep the running text and a `released` offset: everything before it is final, i.e. no
match that is still to come can cover it. Each detector says how much of the tail it must hold back
(`Detector.hold`); we release up to `len - hold`, pulling the boundary back to the start of any match that
straddles it. Records are emitted in order once all their deltas lie in released text; a record whose text
is unchanged goes out byte-for-byte, an edited one is re-encoded by its shape. A match spread over several
records is replaced as a whole: the replacement goes into the record holding the match's first character and
the rest of the match is removed from the following records, so the reassembled text equals the redacted
full text exactly.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from extproc import document
from extproc.detectors.hold import hold_run
from extproc.errors import GatewayError, PayloadTooLarge, PolicyDenied
from extproc.framing import Record, framer_for
from extproc.model import TextDelta
from extproc.normalize import Budget, fold
from extproc.policy.engine import decide, observe_detector_time, scan_text
from extproc.redact import Span
from extproc.rules import CompiledRule, Hit
from extproc.shapes.base import Shape, set_path
from extproc.tool_calls import ToolCallAssembler
from extproc.work_budget import WorkBudget

RAW_KEY = "__raw_record__"
OTHER_KEY = "__other__"
# Fields whose value is a whole identifier in every event, never a piece of streamed text.
WHOLE_VALUE_KEYS = frozenset(("id", "object", "model", "system_fingerprint", "type", "role", "finish_reason",
                              "stop_reason", "done_reason", "status", "created_at", "event", "name",
                              "call_id", "item_id", "response_id", "service_tier"))
ENCODED_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-%")
MAX_ENCODED_HOLD = 4097


class _KeyText:
    __slots__ = ("base", "released", "spans", "text")

    def __init__(self) -> None:
        self.text = ""  # running text of this key from absolute offset `base`
        self.base = 0
        self.released = 0  # absolute offset: text before it is final
        self.spans: list[Span] = []  # final redaction spans, absolute offsets

    @property
    def end(self) -> int:
        return self.base + len(self.text)


class _Pending:
    __slots__ = ("deltas", "payload", "record", "tools")

    def __init__(self, record: Record, payload: Any, deltas: list[tuple[Any, int, int, tuple[Any, ...]]],
                 tools: tuple[Any, ...] = ()) -> None:
        self.record = record
        self.payload = payload
        self.deltas = deltas  # (key, absolute start, absolute end, locator)
        self.tools = tools  # keys of the tool calls this record carries a piece of


class StreamScanner:
    def __init__(self, shape: Shape, framing: str, rules: tuple[CompiledRule, ...], max_held: int,
                 on_limit: str, max_total: int | None = None, strip_usage: bool = False,
                 normalized: bool = True, on_payload: Any = None, on_tool_call: Any = None,
                 hold_tool_calls: bool = True, notice: str = "auto", work: WorkBudget | None = None) -> None:
        self.shape = shape
        self.notice = notice
        self.work = work  # the exchange's detector CPU budget
        # Called with every complete assistant tool call (checks); may raise to end the stream. With
        # `hold_tool_calls`, no record carrying a piece of a call is released before the call was checked.
        self.on_tool_call = on_tool_call
        self.tool_calls = ToolCallAssembler() if on_tool_call is not None else None
        self.hold_tool_calls = hold_tool_calls
        self.on_payload = on_payload  # called with every decoded event (checks); may raise to end the stream
        self.normalized = normalized
        self.budget = Budget(max_attempts=4096)  # the tail is rescanned: allow more decode attempts
        self.max_total = max_total
        self.total_bytes = 0
        self.strip_usage = strip_usage  # we asked the upstream for usage: the client must not see it
        self.usage: dict[str, int] = {}
        self.framer = framer_for(framing)
        self.rules = rules
        self.max_held = max_held
        self.on_limit = on_limit
        self.keys: dict[Any, _KeyText] = {}
        self._last_other: dict[Any, str] = {}
        self._last_skeleton = b""  # the previous event's bytes without its claimed text
        self._whole: set[Any] = set()  # keys whose every value is whole: scanned and released per event
        self.pending: deque[_Pending] = deque()
        self.held_bytes = 0
        self.hits: list[Hit] = []
        self.detector_seconds: dict[str, float] = {}  # per detector, summed over the stream's chunks
        self.error: GatewayError | None = None  # set when the stream was ended with an error event
        # Monitor and annotate rules never change text, so they do not delay the stream; they see the text
        # as it is released. Detectors that see normalised text hold on the folded text, the others on the raw.
        holding = {id(r.detector): r.detector for r in rules if r.changes_text}.values()
        self._raw_holds = [d for d in holding if not (normalized and d.normalized)]
        self._folded_holds = [d for d in holding if normalized and d.normalized]

    def push(self, chunk: bytes) -> bytes:
        """Feed one upstream chunk; return the bytes that may go to the client now."""
        if self.error is not None:
            return b""
        return self._guarded(lambda: self._take(self.framer.feed(chunk), final=False))

    def finish(self, chunk: bytes = b"") -> bytes:
        """Feed the last chunk and release everything that is left."""
        if self.error is not None:
            return b""
        return self._guarded(lambda: self._take(self.framer.feed(chunk) + self.framer.flush(), final=True))

    def abort(self, exc: GatewayError) -> bytes:
        """End the stream with `exc`: drop everything held, release nothing more, return what tells the
        client (the error event, a notice the user sees, or both: `notice`)."""
        self.error = exc
        self.pending.clear()
        notice = self.shape.default_deny_notice if self.notice == "auto" else self.notice
        if not isinstance(exc, PolicyDenied):
            notice = "error"  # the notice tells of a policy decision; failures end with the error event
        text = self.shape.stream_notice(f"\n\n[This answer was stopped by policy: {exc.message}]",
                                        final=notice == "content") if notice != "error" else b""
        if text and notice == "content":
            return text
        return text + self.shape.stream_error_event(exc.code, exc.message)

    def observe_detector_seconds(self) -> None:
        """One histogram sample per detector for the whole stream (the exchange is over)."""
        for name, seconds in self.detector_seconds.items():
            observe_detector_time(name, seconds)
        self.detector_seconds.clear()

    def _guarded(self, step: Callable[[], bytes]) -> bytes:
        try:
            return step()
        except GatewayError as exc:
            return self.abort(exc)

    def _take(self, records: list[Record], final: bool) -> bytes:
        self._check_total(records)
        touched: set[Any] = set()
        for record in records:
            touched.update(self._append(record))
        if final:
            touched = set(self.keys)
            self._close_tool_calls()
        # No event ends inspection: a key the shape calls closed (finish_reason, content_block_stop, [DONE])
        # still holds its tail until the hold-back rule or the end of the bytes releases it.
        for key in touched:
            self._advance(self.keys[key], final or key in self._whole)
        out = self._emit()
        # The limit bounds what is still held once this chunk's safe text went out, not the chunk's size: a
        # burst of records larger than the limit in one chunk is not a reason to end the stream.
        if not final and self.held_bytes + self.framer.pending > self.max_held:
            if self.on_limit == "fail_closed" or self._holding_tool_call():  # an unchecked call never leaks
                return out + self.abort(PayloadTooLarge(
                    f"stream held more than {self.max_held} bytes awaiting a decision", code="stream_hold_limit"))
            for keytext in self.keys.values():
                self._advance(keytext, True)
            out += self._emit()
        return out

    def _check_total(self, records: list[Record]) -> None:
        self.total_bytes += sum(len(r.raw) for r in records)
        if self.max_total is not None and self.total_bytes > self.max_total and self.on_limit == "fail_closed":
            raise PayloadTooLarge(f"streamed response is larger than {self.max_total} bytes",
                                  code="response_too_large")

    def _append(self, record: Record) -> list[Any]:
        payload = self.shape.decode_record(record)
        if payload is not None:
            if self.on_payload is not None:
                self.on_payload(payload)
            usage = self.shape.usage_of(payload)
            if usage:
                self.usage.update(usage)
                if self.strip_usage and self.shape.is_usage_only(payload):
                    return []
            deltas = self.shape.stream_deltas(payload)
            deltas += self._other_deltas(record, payload, deltas)
            tools = self._take_tool_fragments(payload)
        elif record.data == b"[DONE]":
            deltas, tools = [], ()
            self._close_tool_calls()
        elif record.raw.strip():
            # Not JSON the shape can read (plain text, a comment, a truncated last record, an unknown SSE
            # field): the client still receives it, so its raw text is scanned like any other.
            deltas = [TextDelta(RAW_KEY, record.raw.decode("utf-8", "replace"), ())]
            tools = ()
        else:
            deltas, tools = [], ()
        placed = []
        for delta in deltas:
            keytext = self.keys.get(delta.key)
            if keytext is None:
                keytext = self.keys[delta.key] = _KeyText()
            start = keytext.end
            keytext.text += delta.text
            placed.append((delta.key, start, keytext.end, delta.locator))
        self.pending.append(_Pending(record, payload, placed, tools))
        self.held_bytes += len(record.raw)
        return [d.key for d in deltas]

    def _other_deltas(self, record: Record, payload: Any, deltas: list[TextDelta]) -> list[TextDelta]:
        """Every string of the event the shape did not claim (unknown fields, ids, new vendor fields), as a
        delta keyed by its path, so pieces of one field across events are scanned as one text. A value equal
        to the previous one at the same path (an id or model repeated in every event) was scanned already;
        an event whose bytes outside its claimed text equal the previous event's has nothing new at all."""
        skeleton = record.raw
        for delta in deltas:
            skeleton = skeleton.replace(orjson.dumps(delta.text), b"", 1)
        if skeleton == self._last_skeleton:
            return []
        self._last_skeleton = skeleton
        claimed = {delta.locator for delta in deltas}
        out = []
        for locator, text in document.strings(payload, skip=claimed):
            if not text:
                continue
            key = (OTHER_KEY, *locator)
            if self._last_other.get(key) != text:
                self._last_other[key] = text
                out.append(TextDelta(key, text, locator))
                if _is_whole(payload, locator):
                    self._whole.add(key)
        return out

    def _take_tool_fragments(self, payload: Any) -> tuple[Any, ...]:
        """Assemble the event's tool-call pieces, check the calls it completes; the keys to hold it for."""
        if self.tool_calls is None:
            return ()
        fragments = self.shape.tool_fragments(payload)
        complete = [call for fragment in fragments for call in self.tool_calls.add(fragment)]
        complete += self.tool_calls.close(self.shape.closed_keys(payload, list(self.tool_calls.open)))
        self._check_tool_calls(complete)
        return tuple({f.key for f in fragments}) if self.hold_tool_calls else ()

    def _check_tool_calls(self, calls: list[Any]) -> None:
        for call in calls:
            self.on_tool_call(call)

    def _close_tool_calls(self) -> None:
        """The stream ended: every open tool call is as complete as it will get."""
        if self.tool_calls is not None:
            self._check_tool_calls(self.tool_calls.close_all())

    def _tool_call_open(self, keys: tuple[Any, ...]) -> bool:
        return self.tool_calls is not None and any(self.tool_calls.pending(key) for key in keys)

    def _holding_tool_call(self) -> bool:
        return self.hold_tool_calls and self.tool_calls is not None and bool(self.tool_calls.open)

    def _advance(self, kt: _KeyText, final: bool) -> None:
        """Move `kt.released` forward as far as is safe, recording the matches that became final."""
        unreleased = kt.text[kt.released - kt.base :]
        if not unreleased:
            return
        boundary = kt.end if final else kt.released + self._safe_prefix(unreleased)
        if boundary <= kt.released:
            return
        hits = scan_text(self.rules, unreleased, "assistant", "response", self.budget, self.normalized,
                         self.detector_seconds, self.work)
        boundary = _pull_back(boundary, [h for h in hits if _changes_text(h)], kt.released)
        settled = [h for h in hits if kt.released + h.finding.end <= boundary]
        self._settle(kt, settled)
        kt.released = boundary

    def _safe_prefix(self, unreleased: str) -> int:
        """How many leading characters of the unreleased text no future match can cover.

        Detectors see normalised text, so their hold is computed on the folded text and mapped back; a trailing
        run of base64/hex/percent characters is held too, as it may grow into an encoded blob."""
        if not (self._raw_holds or self._folded_holds):
            return len(unreleased)
        safe = len(unreleased) - max((d.hold(unreleased) for d in self._raw_holds), default=0)
        if not self._folded_holds:
            return safe
        folded = fold(unreleased)
        text = folded.text
        hold = max((d.hold(text) for d in self._folded_holds), default=0)
        hold = max(hold, hold_run(text, ENCODED_CHARS, MAX_ENCODED_HOLD))
        if hold == 0:
            return safe
        return min(safe, folded.to_original(len(text) - hold, len(text))[0])

    def _settle(self, kt: _KeyText, hits: list[Hit]) -> None:
        offset = kt.released  # report offsets in the key's whole text, not in the rescanned tail
        self.hits.extend(dataclasses.replace(h, finding=dataclasses.replace(
            h.finding, start=h.finding.start + offset, end=h.finding.end + offset)) for h in hits)
        decision = decide(hits)
        if decision.refusal is not None:
            raise decision.refusal  # _guarded ends the stream with it
        spans = decision.spans.get(0)
        if spans:
            offset = kt.released
            kt.spans.extend(Span(s.start + offset, s.end + offset, s.replacement) for s in spans)

    def _emit(self) -> bytes:
        out: list[bytes] = []
        pending = self.pending
        while pending and all(self.keys[key].released >= end for key, _, end, _ in pending[0].deltas) \
                and not self._tool_call_open(pending[0].tools):
            item = pending.popleft()
            self.held_bytes -= len(item.record.raw)
            out.append(self._render(item))
        self._trim()
        return b"".join(out)

    def _render(self, item: _Pending) -> bytes:
        changed = False
        for key, start, end, locator in item.deltas:
            edited = _edited_slice(self.keys[key], start, end)
            if edited is not None and key == RAW_KEY:
                return edited.encode()
            if edited is not None:
                set_path(item.payload, locator, edited)
                changed = True
        return self.shape.encode_record(item.record, item.payload) if changed else item.record.raw

    def _trim(self) -> None:
        """Forget text and spans no pending record can still need."""
        keep_from = {key: kt.released for key, kt in self.keys.items()}
        for item in self.pending:
            for key, start, _, _ in item.deltas:
                keep_from[key] = min(keep_from[key], start)
        for key, kt in self.keys.items():
            cut = keep_from[key]
            if cut > kt.base:
                kt.text = kt.text[cut - kt.base :]
                kt.base = cut
                kt.spans = [s for s in kt.spans if s.end > cut]


def _changes_text(hit: Hit) -> bool:
    return isinstance(hit.rule, CompiledRule) and hit.rule.changes_text


def _is_whole(payload: Any, locator: tuple[Any, ...]) -> bool:
    """A value that is never continued by a later event: an object key, a number, an identifier field."""
    last = locator[-1] if locator else None
    if isinstance(last, document.KeyStep) or last in WHOLE_VALUE_KEYS:
        return True
    return document.EMBED not in locator and not isinstance(document.read_path(payload, locator), str)


def _pull_back(boundary: int, hits: list[Hit], offset: int) -> int:
    """Lower the boundary to the start of any match that straddles it (repeat until none does)."""
    moved = True
    while moved:
        moved = False
        for hit in hits:
            start, end = offset + hit.finding.start, offset + hit.finding.end
            if start < boundary < end:
                boundary, moved = start, True
    return boundary


def _edited_slice(kt: _KeyText, start: int, end: int) -> str | None:
    """The text of [start, end) with final spans applied, or None if no span touches it."""
    touching = [s for s in kt.spans if s.end > start and s.start < end]
    if not touching:
        return None
    text, base = kt.text, kt.base
    pieces: list[str] = []
    cursor = start
    for span in touching:
        if span.start >= start:
            pieces.append(text[cursor - base : span.start - base])
            pieces.append(span.replacement)
        cursor = max(cursor, min(span.end, end))
    pieces.append(text[cursor - base : end - base])
    return "".join(pieces)

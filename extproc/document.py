"""Every string of a JSON document, so detectors see all of it (complete mediation).

A shape names the segments it understands (messages with roles, tool calls, ...). Everything else a model
server or client could act on is still text: unknown fields, `options.stop`, tool descriptions, object keys,
long numbers (a card number written as a JSON number), and JSON held inside a string (tool-call arguments),
which is decoded first so escapes cannot hide a match. `other_segment` gathers those strings into one joined
segment (one detector pass instead of one per string); `write_path` writes an edited string back through any
locator, re-encoding embedded JSON and renaming keys.

Locator steps: a key or index; `EMBED` (the string here holds JSON: step into the decoded document);
`KeyStep(name)` (the text is the object key `name`, not its value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extproc import canonical_json
from extproc.model import Segment

OTHER = "other"
JOINED = "__joined__"
SEPARATOR = "\n\n"
MIN_NUMBER_DIGITS = 9  # shorter numbers cannot be a card, phone or account number


class _Embed:
    def __repr__(self) -> str:
        return "EMBED"


EMBED = _Embed()


@dataclass(frozen=True, slots=True)
class KeyStep:
    name: str


def embedded_json(text: str) -> Any | None:
    """The document a string holds, when it is a JSON object or array (tool-call arguments), else None."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        doc = canonical_json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, (dict, list)) else None


def strings(node: Any, base: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(locator, text) of every string, unknown key and long number below `node`, embedded JSON decoded."""
    out: list[tuple[tuple[Any, ...], str]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [(base, node)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            inner = embedded_json(value) if value else None
            if inner is None:
                out.append((path, value))
            else:
                stack.append(((*path, EMBED), inner))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if key not in canonical_json.KNOWN_KEYS:
                    out.append(((*path, KeyStep(key)), key))
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            text = number_text(value)
            if sum(c.isdigit() for c in text) >= MIN_NUMBER_DIGITS:
                out.append((path, text))
    return out


def number_text(value: float) -> str:
    """The digits a consumer reads from a JSON number: `4.111111111111111e15` is the integer
    4111111111111111 to pydantic; other numbers as they were spelled."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return getattr(value, "raw", None) or repr(value)


def complete(doc: Any, segments: list[Segment]) -> list[Segment]:
    """The shape's segments, with embedded JSON decoded, plus one `other` segment for all the rest."""
    claimed = {segment.locator for segment in segments}
    out: list[Segment] = []
    for segment in segments:
        inner = embedded_json(segment.text)
        if inner is None:
            out.append(segment)
            continue
        pieces = strings(inner, (*segment.locator, EMBED))
        if pieces:  # `{}` holds nothing to scan
            out.append(joined(pieces, segment.role))
    rest = [(loc, text) for loc, text in strings(doc) if not _within(loc, claimed)]
    if rest:
        out.append(joined(rest, OTHER))
    return out


def _within(locator: tuple[Any, ...], claimed: set[tuple[Any, ...]]) -> bool:
    return any(locator[:n] in claimed for n in range(1, len(locator) + 1))


def joined(pieces: list[tuple[tuple[Any, ...], str]], role: str) -> Segment:
    """One segment for many strings; its locator remembers where each piece sits in the joined text."""
    if len(pieces) == 1:
        return Segment(pieces[0][1], role, pieces[0][0])
    placed = []
    start = 0
    for locator, text in pieces:
        placed.append((start, start + len(text), locator))
        start += len(text) + len(SEPARATOR)
    return Segment(SEPARATOR.join(text for _, text in pieces), role, (JOINED, tuple(placed)))


def is_joined(locator: tuple[Any, ...]) -> bool:
    return bool(locator) and locator[0] == JOINED


def write_path(doc: Any, locator: tuple[Any, ...], value: Any) -> None:
    """Write `value` at `locator` inside a parsed JSON document (through EMBED and KeyStep steps)."""
    if EMBED in locator:
        cut = locator.index(EMBED)
        outer = locator[:cut]
        inner = canonical_json.loads(read_path(doc, outer))
        if cut + 1 == len(locator):
            inner = value
        else:
            write_path(inner, locator[cut + 1 :], value)
        write_path(doc, outer, inner if isinstance(inner, str) else canonical_json.dumps(inner).decode())
        return
    target = doc
    for step in locator[:-1]:
        target = target[step]
    last = locator[-1]
    if isinstance(last, KeyStep):
        target[value] = target.pop(last.name)
    else:
        target[last] = value


def read_path(doc: Any, locator: tuple[Any, ...]) -> Any:
    target = doc
    for step in locator:
        target = target[step]
    return target

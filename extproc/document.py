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


def strings(node: Any, base: tuple[Any, ...] = (),
            skip: frozenset[tuple[Any, ...]] | set[tuple[Any, ...]] = frozenset()) -> list[tuple[tuple[Any, ...], str]]:
    """(locator, text) of every string, unknown key and long number below `node`, embedded JSON decoded;
    values at the locators in `skip` (and below them) are left out."""
    out: list[tuple[tuple[Any, ...], str]] = []
    _walk(node, base, out, skip)
    return out


def _walk(value: Any, path: tuple[Any, ...], out: list[tuple[tuple[Any, ...], str]],
          skip: frozenset[tuple[Any, ...]] | set[tuple[Any, ...]]) -> None:
    # Recursion is bounded: documents come from canonical_json (MAX_DEPTH) or orjson (1024 levels).
    if skip and path in skip:
        return
    if isinstance(value, str):
        inner = embedded_json(value) if value[:1] in _JSON_STARTS or value[:1].isspace() else None
        if inner is None:
            out.append((path, value))
        else:
            _walk(inner, (*path, EMBED), out, skip)
    elif isinstance(value, dict):
        known = canonical_json.KNOWN_KEYS
        for key, item in value.items():
            if key not in known:
                out.append(((*path, KeyStep(key)), key))
            if item is not None and item is not True and item is not False:
                _walk(item, (*path, key), out, skip)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if item is not None:
                _walk(item, (*path, i), out, skip)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= _MIN_NUMBER:
        text = number_text(value)
        if sum(c.isdigit() for c in text) >= MIN_NUMBER_DIGITS:
            out.append((path, text))


_JSON_STARTS = frozenset("{[")
# A number below this has fewer than MIN_NUMBER_DIGITS digits before its point; small floats with long
# fractions are still read by their text (`number_text`) when they reach it.
_MIN_NUMBER = 10 ** (MIN_NUMBER_DIGITS - 1)


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
    rest = strings(doc, skip=claimed)
    if rest:
        out.append(joined(rest, OTHER))
    return out


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

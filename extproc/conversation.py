"""Where a request finding sits in the conversation, and what chat history changes about it.

Chat UIs resend the whole history every turn: after a prompt with a secret was refused, every later turn
would be refused for the same old message. So a deny finding in a turn *before the newest user turn* is
redacted before the upstream instead (a rule's `history: redact`, the default), or denied as before
(`history: judge`). Every request finding is named by its message (`messages[3] (user)`) in the error and in
the audit record.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from extproc.document import is_joined
from extproc.model import Segment
from extproc.rules import CompiledRule, Hit


def turn_of(locator: tuple[Any, ...], messages_field: str) -> int | None:
    """The index of the message a segment belongs to, or None outside the message list."""
    if is_joined(locator):
        if not locator[1]:
            return None
        locator = locator[1][0][2]  # a joined segment's pieces all come from one message (tool arguments)
    if len(locator) >= 2 and locator[0] == messages_field and isinstance(locator[1], int):
        return locator[1]
    return None


def place_hits(found: list[tuple[int, Hit]], segments: list[Segment],
               messages_field: str) -> list[tuple[int, Hit]]:
    """Name each hit's message; turn an earlier turn's deny into a redaction where its rule says so."""
    turns = [turn_of(segment.locator, messages_field) for segment in segments]
    newest = max((t for t, s in zip(turns, segments) if t is not None and s.role == "user"), default=None)
    placed = []
    for index, hit in found:
        turn, role = turns[index], segments[index].role
        where = f"{messages_field}[{turn}] ({role})" if turn is not None else f"({role})"
        action = hit.action_taken
        if (isinstance(hit.rule, CompiledRule) and hit.rule.action == "deny" and hit.rule.history == "redact"
                and turn is not None
                and newest is not None and turn < newest):
            action = "redact"
        placed.append((index, dataclasses.replace(hit, where=where, action_taken=action)))
    return placed

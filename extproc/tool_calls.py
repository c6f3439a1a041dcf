"""Assemble streamed tool calls from the fragments a shape reports, so a call is checked whole, once, before
any record carrying a piece of it is released.

A call opens with its first fragment and completes when the shape closes its key (the choice finished, the
content block stopped, the output item is done) or the stream ends. A fragment that carries a whole call
(Ollama, or a lifecycle event repeating one) completes at once; a repeat identical to a call already checked
is not checked again, a different one is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from extproc.model import ToolCall, ToolFragment
from extproc.shapes.base import tool_call


class _Building:
    __slots__ = ("name", "pieces", "whole")

    def __init__(self) -> None:
        self.name: str | None = None
        self.pieces: list[str] = []
        self.whole: Any = None  # arguments given as an object instead of text

    def add(self, fragment: ToolFragment) -> None:
        if fragment.name and fragment.name != self.name:
            # OpenAI-style servers send the name once, some split it over deltas, some repeat it whole
            self.name = (self.name or "") + fragment.name
        if isinstance(fragment.arguments, str):
            self.pieces.append(fragment.arguments)
        elif fragment.arguments is not None:
            self.whole = fragment.arguments

    def call(self, key: Any) -> ToolCall:
        arguments = self.whole if self.whole is not None else "".join(self.pieces)
        return tool_call(self.name, arguments, key)


class ToolCallAssembler:
    def __init__(self) -> None:
        self.open: dict[Any, _Building] = {}
        self.checked: dict[Any, ToolCall] = {}

    def add(self, fragment: ToolFragment) -> list[ToolCall]:
        """Take one fragment; return the call it completes (a whole call not checked before), if any."""
        if not fragment.whole:
            self.open.setdefault(fragment.key, _Building()).add(fragment)
            return []
        building = _Building()
        building.add(fragment)
        call = building.call(fragment.key)
        self.open.pop(fragment.key, None)
        return [] if self._seen(call) else [self._done(call)]

    def close(self, keys: Iterable[Any]) -> list[ToolCall]:
        """Complete the open calls among `keys`."""
        return [self._done(self.open.pop(key).call(key)) for key in list(keys) if key in self.open]

    def close_all(self) -> list[ToolCall]:
        return self.close(list(self.open))

    def pending(self, key: Any) -> bool:
        """True while the call under `key` is open (its records must wait)."""
        return key in self.open

    def _seen(self, call: ToolCall) -> bool:
        before = self.checked.get(call.key)
        return before is not None and (before.name, before.arguments) == (call.name, call.arguments)

    def _done(self, call: ToolCall) -> ToolCall:
        self.checked[call.key] = call
        return call

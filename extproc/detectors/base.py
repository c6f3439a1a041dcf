"""The detector contract: detectors only find, the policy engine decides.

A detector is a class with a `name`, a pydantic `Params` model (validated as the rule's `params` in the policy
file), `max_span` (the longest text it can match, in characters) and two methods:

* `find(text)` returns every `Finding` in `text`;
* `hold(text)` says how many trailing characters of `text` a match could still cover once more text arrives.
  The streaming scanner holds those back. The default (`max_span - 1`) is always safe; detectors whose
  matches start with known anchors or consist of a narrow character class override it so streams are not
  delayed by the full span.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from extproc.model import Finding


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Detector(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    max_span: int = 256
    # OWASP Top 10 for LLM Applications entries this covers, 2025 and 2026 numbering, e.g. ("LLM03:2025",
    # "LLM04:2026"); written into every audit hit so reports can group by them.
    owasp: ClassVar[tuple[str, ...]] = ()
    # False for detectors that must see the text exactly as sent (e.g. a URL allowlist, where folding a
    # look-alike letter to ASCII would turn a foreign host into an allowed one).
    normalized: ClassVar[bool] = True
    # True for detectors that run a model (milliseconds per text): the session scans requests off the event loop.
    blocking: bool = False

    def __init__(self, params: BaseModel | None = None) -> None:
        # Any: each subclass reads its own Params fields; the policy loader validated them against that model
        self.params: Any = params if params is not None else self.Params()

    @abstractmethod
    def find(self, text: str) -> list[Finding]:
        """All findings in `text`, offsets in characters."""

    def find_in_role(self, text: str, role: str) -> list[Finding]:
        """`find` for a message of `role` (user, tool, system, ...); detectors with per-role settings override."""
        return self.find(text)

    def hold(self, text: str) -> int:
        """Trailing characters of `text` that a match continuing into future text could still cover.

        The streaming scanner rescans only the text it has not released, so the hold must also cover any
        context a future match depends on (e.g. the `password=` keyword before a value that is reported
        on its own)."""
        return min(len(text), self.max_span - 1)

"""The rule types every layer shares: the exchange a rule matches, glob matchers, the one `Rule` type (detector
and check rules add their specifics beside its fields) and a rule's `Hit`. Neutral: policy/ compiles into
these, checks/ and the engine read them, and this module imports neither."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from extproc.detectors.base import Detector
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding

if TYPE_CHECKING:  # a type only: checks/ depends on this module, not the other way round
    from extproc.checks.base import Check


class Redaction(BaseModel):
    """How a redact rule writes a match."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["placeholder", "mask", "hash"] = "placeholder"
    placeholder: str = Field("[{LABEL}]", description="{label}/{LABEL} are replaced by the finding label")


@dataclass(frozen=True, slots=True)
class Exchange:
    """What rules match on: known once the request body is parsed."""

    path: str
    shape: str | None
    model: str | None
    headers: dict[str, str]


class Glob:
    """Shell-style glob (`*`, `?`) compiled to RE2, so matching user patterns is linear-time."""

    def __init__(self, patterns: list[str]) -> None:
        self.any = not patterns
        if patterns:
            body = "|".join(_glob_to_re2(p) for p in patterns)
            self._re = compile_re2(f"^(?:{body})$")

    def __call__(self, value: str | None) -> bool:
        return self.any or (value is not None and self._re.search(value) is not None)


def _glob_to_re2(pattern: str) -> str:
    out = []
    for char in pattern:
        out.append(".*" if char == "*" else "." if char == "?" else _escape(char))
    return "".join(out)


def _escape(char: str) -> str:
    return "\\" + char if not char.isalnum() and char != "_" else char


@dataclass(frozen=True, slots=True)
class Rule:
    """What every rule has: an id, what it does and in which mode, what its failure does, and which exchanges it
    matches. Detector rules and check rules add their specifics beside these."""

    id: str
    action: str
    mode: str
    on_error: str
    paths: Glob
    models: Glob
    shapes: frozenset[str]
    headers: tuple[tuple[str, Glob], ...]

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def applies_to(self, exchange: Exchange, model_known: bool = True) -> bool:
        return bool(
            self.paths(exchange.path)
            and (not model_known or self.models(exchange.model))
            and (not self.shapes or exchange.shape in self.shapes)
            and all(glob(exchange.headers.get(name)) for name, glob in self.headers)
        )


@dataclass(frozen=True, slots=True)
class CompiledRule(Rule):
    """A detector rule: which texts it scans and how a redaction is written."""

    directions: frozenset[str] = frozenset()
    detector: Detector = None  # type: ignore[assignment]  # always given; dataclass field order needs a default
    redaction: Any = None
    min_score: float = 0.0
    capture: bool = False
    roles: frozenset[str] = frozenset()
    history: str = "redact"  # request rules: what a deny finding in an earlier turn does

    @property
    def changes_text(self) -> bool:
        """Only enforced deny/redact rules change what the client gets; streams hold text back for them."""
        return self.enforced and self.action in ("deny", "redact")

    def scans_role(self, role: str) -> bool:
        return not self.roles or role in self.roles


@dataclass(frozen=True, slots=True)
class CompiledCheck(Rule):
    """A check rule: the check instance that judges the exchange."""

    check: Check = None  # type: ignore[assignment]  # always given
    capture: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    rule: CompiledRule | CompiledCheck
    finding: Finding
    value: str  # the matched text: used for digests and redaction, never logged unless rule.capture
    direction: str
    action_taken: str | None = None  # a check's rewrite, or an earlier turn's deny, records "redact"
    where: str | None = None  # the message it was found in, e.g. "messages[3] (user)"

    @property
    def action(self) -> str:
        return self.action_taken or self.rule.action

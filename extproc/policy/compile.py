"""Compile a validated policy into runnable rules: detector instances (shared between rules with the same
detector and params), glob matchers compiled to RE2, and per-direction rule lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc import checks, detectors
from extproc.checks.base import Check
from extproc.detectors.base import Detector
from extproc.detectors.patterns import compile_re2
from extproc.policy.load import LoadedPolicy, PolicyError


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
class CompiledRule:
    id: str
    action: str
    mode: str
    on_error: str
    directions: frozenset[str]
    detector: Detector
    redaction: Any
    min_score: float
    capture: bool
    paths: Glob
    models: Glob
    shapes: frozenset[str]
    headers: tuple[tuple[str, Glob], ...]
    roles: frozenset[str]
    history: str = "redact"  # request rules: what a deny finding in an earlier turn does

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    @property
    def changes_text(self) -> bool:
        """Only enforced deny/redact rules change what the client gets; streams hold text back for them."""
        return self.enforced and self.action in ("deny", "redact")

    def applies_to(self, exchange: Exchange, model_known: bool = True) -> bool:
        return (
            self.paths(exchange.path)
            and (not model_known or self.models(exchange.model))
            and (not self.shapes or exchange.shape in self.shapes)
            and all(glob(exchange.headers.get(name)) for name, glob in self.headers)
        )

    def scans_role(self, role: str) -> bool:
        return not self.roles or role in self.roles


@dataclass(frozen=True, slots=True)
class CompiledCheck:
    """A rule that runs a check; matches exchanges like a CompiledRule."""

    id: str
    action: str
    mode: str
    on_error: str
    check: Check
    paths: Glob
    models: Glob
    shapes: frozenset[str]
    headers: tuple[tuple[str, Glob], ...]
    capture = False

    enforced = CompiledRule.enforced
    applies_to = CompiledRule.applies_to


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    rules: tuple[CompiledRule, ...]
    settings: Any
    digest: str
    _by_direction: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    checks: tuple[CompiledCheck, ...] = ()

    def checks_for(self, exchange: Exchange, model_known: bool = True) -> tuple[CompiledCheck, ...]:
        return tuple(c for c in self.checks if c.applies_to(exchange, model_known))

    def rules_for(self, direction: str, exchange: Exchange, model_known: bool = True) -> tuple[CompiledRule, ...]:
        """Rules of `direction` matching `exchange`; with model_known=False (request headers, before the body
        names the model) a rule's model condition is treated as matching."""
        return tuple(r for r in self._by_direction[direction] if r.applies_to(exchange, model_known))

    def has_rules(self, direction: str) -> bool:
        return bool(self._by_direction[direction])


def compile_policy(loaded: LoadedPolicy) -> CompiledPolicy:
    instances: dict[bytes, Any] = {}
    rules = tuple(_compile_rule(rule, instances) for rule in loaded.model.rules if hasattr(rule, "detector"))
    compiled_checks = tuple(_compile_check(rule, instances) for rule in loaded.model.rules
                            if hasattr(rule, "check"))
    by_direction = {d: tuple(r for r in rules if d in r.directions) for d in ("request", "response")}
    return CompiledPolicy(rules, loaded.model.settings, loaded.digest, by_direction, compiled_checks)


def _instance(kind: str, name: str, params: Any, rule_id: str, instances: dict[bytes, Any]) -> Any:
    """One detector/check instance per (name, params), shared between rules."""
    key = orjson.dumps([kind, name, params.model_dump(mode="json")], option=orjson.OPT_SORT_KEYS)
    if key not in instances:
        registry = detectors if kind == "detector" else checks
        try:
            instances[key] = registry.get(name)(params)
        except ValueError as exc:
            raise PolicyError(f"rule {rule_id!r}: {exc}") from None
    return instances[key]


def _matchers(rule: Any) -> dict[str, Any]:
    match = rule.match
    try:
        headers = tuple((name.lower(), Glob(globs)) for name, globs in match.headers.items())
        return {"paths": Glob(match.paths), "models": Glob(match.models), "shapes": frozenset(match.shapes),
                "headers": headers}
    except ValueError as exc:
        raise PolicyError(f"rule {rule.id!r}: {exc}") from None


def _compile_check(rule: Any, instances: dict[bytes, Any]) -> CompiledCheck:
    check = _instance("check", rule.check, rule.params, rule.id, instances)
    return CompiledCheck(id=rule.id, action=rule.action, mode=rule.mode, on_error=rule.on_error, check=check,
                         **_matchers(rule))


def _compile_rule(rule: Any, instances: dict[bytes, Any]) -> CompiledRule:
    detector: Detector = _instance("detector", rule.detector, rule.params, rule.id, instances)
    directions = frozenset({"request", "response"} if rule.direction == "both" else {rule.direction})
    return CompiledRule(
        id=rule.id, action=rule.action, mode=rule.mode, on_error=rule.on_error, directions=directions,
        detector=detector, redaction=rule.redaction, min_score=rule.min_score, capture=rule.capture,
        roles=frozenset(rule.match.roles), history=rule.history, **_matchers(rule),
    )

"""Compile a validated policy into runnable rules: detector instances (shared between rules with the same
detector and params), glob matchers compiled to RE2, and per-direction rule lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc import checks, detectors
from extproc.detectors.base import Detector
from extproc.policy.load import LoadedPolicy, PolicyError
from extproc.rules import CompiledCheck, CompiledRule, Exchange, Glob

__all__ = ["CompiledCheck", "CompiledPolicy", "CompiledRule", "Exchange", "Glob", "compile_policy"]


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
    model: Any = loaded.model  # built at run time from the registries (policy/schema.py): fields by name
    rules = tuple(_compile_rule(rule, instances) for rule in model.rules if hasattr(rule, "detector"))
    compiled_checks = tuple(_compile_check(rule, instances) for rule in model.rules if hasattr(rule, "check"))
    by_direction = {d: tuple(r for r in rules if d in r.directions) for d in ("request", "response")}
    return CompiledPolicy(rules, model.settings, loaded.digest, by_direction, compiled_checks)


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

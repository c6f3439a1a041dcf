"""Read a policy file: YAML -> validated model, with errors that name the line and the field."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from extproc import checks, detectors
from extproc.policy.schema import did_you_mean, policy_model


class PolicyError(ValueError):
    """A policy file that cannot be used; the message lists every problem with its line."""


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    model: BaseModel
    digest: str  # sha256 of the file content: the policy version in audit records


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    node, data = _parse(text, source)
    _check_rule_kinds(data, node, source)
    try:
        model: Any = policy_model().model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, node, source)) from None
    _check_unique_ids(model, node, source)
    if not model.rules and not model.allow_empty:
        raise PolicyError(f"{source}: line {_line_of(node, ('rules',))}: the policy has no rules; a policy that "
                          "enforces nothing needs `allow_empty: true` (a truncated file looks like this)")
    return LoadedPolicy(model=model, digest=hashlib.sha256(text.encode()).hexdigest())


def _parse(text: str, source: str) -> tuple[yaml.Node, dict[str, Any]]:
    """The YAML node tree (for line numbers) and the data; refuses an empty file and a missing `version`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        raise PolicyError(f"{source}: the file is empty (no `version:` and no `rules:`)")
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with `version: 1` and `rules:`")
    if "version" not in data:
        raise PolicyError(f"{source}: line 1: `version: 1` is missing (is the file complete?)")
    return node, data


def load_policy_file(path: str) -> LoadedPolicy:
    with open(path, encoding="utf-8") as handle:
        return load_policy_text(handle.read(), source=path)


def _check_rule_kinds(data: dict[str, Any], root: yaml.Node, source: str) -> None:
    """Unknown `detector:` / `check:` names, with the closest known name (the union's own error cannot)."""
    rules = data.get("rules")
    problems = []
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        for kind, registry in (("detector", detectors.registry()), ("check", checks.registry())):
            name = rule.get(kind) if isinstance(rule, dict) else None
            if isinstance(name, str) and name not in registry:
                known = sorted(registry)
                problems.append(f"  line {_line_of(root, ('rules', index, kind))}: rules.{index}.{kind}: unknown "
                                f"{kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
    if problems:
        raise PolicyError("\n".join([f"{source}: invalid policy ({len(problems)} problem(s)):", *problems]))


def _check_unique_ids(model: Any, root: yaml.Node, source: str) -> None:
    lines: dict[str, list[int | None]] = {}
    for index, rule in enumerate(model.rules):
        lines.setdefault(rule.id, []).append(_line_of(root, ("rules", index, "id")))
    problems = [f"  rule id {rule_id!r} is used {len(at)} times (lines {', '.join(map(str, at))})"
                for rule_id, at in lines.items() if len(at) > 1]
    if problems:
        raise PolicyError("\n".join([f"{source}: duplicate rule ids:", *problems]))


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = [f"{source}: invalid policy ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        line, steps = _locate(root, error["loc"])
        where = ".".join(str(step) for step in steps) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (not in the policy schema)"
        lines.append(f"  line {line}: {where}: {message}" if line else f"  {where}: {message}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    return _locate(node, loc)[0]


def _locate(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int | None, list[Any]]:
    """Line (1-based) of the deepest YAML node that `loc` reaches, and the steps of `loc` found in the file."""
    best, steps = node, []
    for step in loc:
        child = _child(best, step)
        if child is None:
            if not (isinstance(step, str) and ":" in step):  # union tags (detector:regex) are not in the file
                steps.append(step)
            continue
        best = child
        steps.append(step)
    return (best.start_mark.line + 1 if best is not None else None), steps


def _child(node: yaml.Node | None, step: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                return value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]
    return None

"""Read a policy file: YAML -> validated model, with errors that name the line and the field."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from extproc.policy.schema import policy_model


class PolicyError(ValueError):
    """A policy file that cannot be used; the message lists every problem with its line."""


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    model: BaseModel
    digest: str  # sha256 of the file content: the policy version in audit records


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with `rules:`")
    try:
        model = policy_model().model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, node, source)) from None
    _check_unique_ids(model, source)
    return LoadedPolicy(model=model, digest=hashlib.sha256(text.encode()).hexdigest())


def load_policy_file(path: str) -> LoadedPolicy:
    with open(path, encoding="utf-8") as handle:
        return load_policy_text(handle.read(), source=path)


def _check_unique_ids(model: Any, source: str) -> None:
    seen: set[str] = set()
    for rule in model.rules:
        if rule.id in seen:
            raise PolicyError(f"{source}: rule id {rule.id!r} is used twice")
        seen.add(rule.id)


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = [f"{source}: invalid policy ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        loc = error["loc"]
        line = _line_of(root, loc)
        where = ".".join(str(step) for step in loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (not in the policy schema)"
        lines.append(f"  line {line}: {where}: {message}" if line else f"  {where}: {message}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest YAML node that `loc` reaches (1-based)."""
    best = node
    for step in loc:
        child = _child(best, step)
        if child is None:
            continue  # union tags and model names appear in loc but not in the document
        best = child
    return best.start_mark.line + 1 if best is not None else None


def _child(node: yaml.Node | None, step: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                return value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]
    return None

"""Check registry. A check is a structural policy component (models, tools, budgets, ...) that looks at the
exchange as a whole rather than at text. Adding one = adding a module here that decorates its class with
`@register`; the policy schema picks up its `Params` from here, as for detectors.
"""

from __future__ import annotations

import importlib
import pkgutil

from extproc.checks.base import Check

_REGISTRY: dict[str, type[Check]] = {}
_NOT_CHECKS = {"base", "context", "runner"}
_loaded = False


def register(cls: type[Check]) -> type[Check]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"check {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Check]]:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name not in _NOT_CHECKS and not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return dict(_REGISTRY)


def get(name: str) -> type[Check]:
    checks = registry()
    if name not in checks:
        raise KeyError(f"unknown check {name!r}; known: {', '.join(sorted(checks))}")
    return checks[name]

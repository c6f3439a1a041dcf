"""Detector registry. Adding a detector = adding a module here that decorates its class with `@register`.

Every module in this package is imported on first use of the registry, so a new module needs no edit
anywhere else; the policy schema picks up its `Params` from here.
"""

from __future__ import annotations

import importlib
import pkgutil

from extproc.detectors.base import Detector

_REGISTRY: dict[str, type[Detector]] = {}
_NOT_DETECTORS = {"base", "hold", "patterns"}
_loaded = False


def register(cls: type[Detector]) -> type[Detector]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Detector]]:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name not in _NOT_DETECTORS and not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return dict(_REGISTRY)


def get(name: str) -> type[Detector]:
    detectors = registry()
    if name not in detectors:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(sorted(detectors))}")
    return detectors[name]

"""Shape registry. Adding an API shape = adding a module here that decorates its class with `@register`."""

from __future__ import annotations

import importlib
import pkgutil

from extproc.shapes.base import Shape

_BY_NAME: dict[str, Shape] = {}
_BY_PATH: dict[str, Shape] = {}
_loaded = False


def register(cls: type[Shape]) -> type[Shape]:
    shape = cls()
    _BY_NAME[cls.name] = shape
    for path in cls.paths:
        if path in _BY_PATH and _BY_PATH[path].name != cls.name:
            raise ValueError(f"path {path} claimed by shapes {_BY_PATH[path].name} and {cls.name}")
        _BY_PATH[path] = shape
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base" and not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True


def for_path(path: str) -> Shape | None:
    """The shape serving a request path (query string ignored), or None for non-LLM traffic."""
    _load()
    return _BY_PATH.get(path.split("?", 1)[0].rstrip("/") or "/")


def all_shapes() -> dict[str, Shape]:
    _load()
    return dict(_BY_NAME)

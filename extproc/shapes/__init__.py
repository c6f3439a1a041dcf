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


# Read-only metadata chat UIs call (model lists, versions): they carry no prompt and stay reachable when
# `unknown_paths: deny`.
METADATA_PATHS = frozenset(("/v1/models", "/models", "/api/tags", "/api/version", "/api/ps", "/api/show"))


def canonical_path(path: str) -> str:
    """The path as a router that merges slashes and resolves dot segments reads it, query and trailing slash
    dropped. Envoy's shipped configs normalise the same way before routing; this is the service's own guard."""
    parts: list[str] = []
    for part in path.split("?", 1)[0].split("#", 1)[0].split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


def for_path(path: str) -> Shape | None:
    """The shape serving a request path, or None (then any JSON body is read by the generic shape)."""
    _load()
    return _BY_PATH.get(canonical_path(path))


def is_metadata_path(method: str, path: str) -> bool:
    return method in ("GET", "HEAD", "POST") and canonical_path(path) in METADATA_PATHS


def all_shapes() -> dict[str, Shape]:
    _load()
    return dict(_BY_NAME)

"""The JSON Schema subset the `tools` check constrains tool-call arguments with, validated at load.

Supported: `type`, `enum`, `required`, `properties`, `additionalProperties` (boolean), `items`, `minimum`,
`maximum`, `minLength`, `maxLength`, `pattern` (RE2, searched like JSON Schema's). Anything else is a load
error, so a policy never silently relies on a keyword that is not enforced. Problems name the argument's path
and the broken keyword, never the value: arguments are model output.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from extproc.detectors.patterns import compile_re2

JsonType = Literal["object", "array", "string", "integer", "number", "boolean", "null"]


class ArgSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: JsonType | list[JsonType] | None = None
    enum: list[Any] | None = Field(None, min_length=1)
    required: list[str] = Field(default_factory=list)
    properties: dict[str, ArgSchema] = Field(default_factory=dict)
    additionalProperties: bool = True
    items: ArgSchema | None = None
    minimum: float | None = None
    maximum: float | None = None
    minLength: int | None = Field(None, ge=0)
    maxLength: int | None = Field(None, ge=0)
    pattern: str | None = None
    _regex: Any = PrivateAttr(None)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_re2(value)  # raises ValueError with RE2's reason
        return value

    def model_post_init(self, context: Any) -> None:
        self._regex = compile_re2(self.pattern) if self.pattern is not None else None

    def problem(self, value: Any, path: str = "arguments") -> str | None:
        """The first way `value` breaks this schema, or None."""
        for check in (self._type_problem, self._enum_problem, self._number_problem, self._string_problem,
                      self._object_problem, self._array_problem):
            found = check(value, path)
            if found:
                return found
        return None

    def _type_problem(self, value: Any, path: str) -> str | None:
        if self.type is None:
            return None
        wanted = [self.type] if isinstance(self.type, str) else self.type
        return None if any(_is_type(value, t) for t in wanted) else f"`{path}` must be of type {'/'.join(wanted)}"

    def _enum_problem(self, value: Any, path: str) -> str | None:
        if self.enum is None or any(_same(value, allowed) for allowed in self.enum):
            return None
        return f"`{path}` is not one of the allowed values"

    def _number_problem(self, value: Any, path: str) -> str | None:
        if not _is_type(value, "number"):
            return None
        if self.minimum is not None and value < self.minimum:
            return f"`{path}` is below the minimum {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"`{path}` is above the maximum {self.maximum:g}"
        return None

    def _string_problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            return None
        if self.minLength is not None and len(value) < self.minLength:
            return f"`{path}` is shorter than {self.minLength} characters"
        if self.maxLength is not None and len(value) > self.maxLength:
            return f"`{path}` is longer than {self.maxLength} characters"
        if self._regex is not None and self._regex.search(value) is None:
            return f"`{path}` does not match the required pattern"
        return None

    def _object_problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return None
        for name in self.required:
            if name not in value:
                return f"`{path}.{name}` is required"
        if not self.additionalProperties and any(name not in self.properties for name in value):
            return f"`{path}` has a property the policy does not allow"
        for name, schema in self.properties.items():
            found = schema.problem(value[name], f"{path}.{name}") if name in value else None
            if found:
                return found
        return None

    def _array_problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, list) or self.items is None:
            return None
        for i, item in enumerate(value):
            found = self.items.problem(item, f"{path}[{i}]")
            if found:
                return found
        return None


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool,
                              "null": type(None)}[kind])


def _same(value: Any, allowed: Any) -> bool:
    """JSON equality: `true` is not `1`."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return type(value) is type(allowed) and value == allowed
    return bool(value == allowed)

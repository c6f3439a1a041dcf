"""The one policy schema. Rules are a tagged union on `detector`; each detector's `Params` model comes from
the detector registry, so adding a detector adds its params to the schema with no edit here."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, create_model

from extproc import checks, detectors, shapes
from extproc.rules import Redaction

Action = Literal["deny", "redact", "annotate"]
Mode = Literal["enforce", "monitor"]
OnError = Literal["fail_closed", "fail_open"]
Direction = Literal["request", "response", "both"]


# Message roles the shapes pass to rules: a rule naming another role would silently never match.
KNOWN_ROLES = ("system", "developer", "user", "assistant", "tool", "function", "other")  # other: strings no shape names


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(kind: str, known: Callable[[], Iterable[str]]) -> AfterValidator:
    def check(value: str) -> str:
        names = sorted(known())
        if value not in names:
            raise ValueError(f"unknown {kind} {value!r}{did_you_mean(value, names)}; known: {', '.join(names)}")
        return value

    return AfterValidator(check)


Role = Annotated[str, _one_of("role", lambda: KNOWN_ROLES)]
ShapeName = Annotated[str, _one_of("shape", lambda: shapes.all_shapes())]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(Strict):
    """Which exchanges a rule applies to. Every list is OR-ed; the fields are AND-ed; empty = any."""

    paths: list[str] = Field(default_factory=list, description="glob patterns on the request path")
    models: list[str] = Field(default_factory=list, description="glob patterns on the requested model")
    shapes: list[ShapeName] = Field(default_factory=list, description="API shapes, e.g. openai_chat, ollama_chat")
    headers: dict[str, list[str]] = Field(
        default_factory=dict, description="header name -> glob patterns (e.g. a tenant header)"
    )
    roles: list[Role] = Field(
        default_factory=list, description="message roles scanned (user, system, tool, assistant, ...)"
    )


class RuleBase(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    description: str = ""
    direction: Direction = "both"
    action: Action = "deny"
    mode: Mode = "enforce"
    on_error: OnError = "fail_closed"
    match: Match = Field(default_factory=Match)
    redaction: Redaction = Field(default_factory=Redaction)
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    capture: bool = Field(False, description="log the matched text in the audit record (off by default)")
    history: Literal["redact", "judge"] = Field(
        "redact", description="request rules: a deny finding in a turn before the newest user turn (chat UIs "
        "resend the whole history) is redacted before the upstream (redact) or denied as today (judge)")


class CheckMatch(Strict):
    """Which exchanges a check applies to (as for detector rules, without roles)."""

    paths: list[str] = Field(default_factory=list, description="glob patterns on the request path")
    models: list[str] = Field(default_factory=list, description="glob patterns on the requested model")
    shapes: list[ShapeName] = Field(default_factory=list, description="API shapes, e.g. openai_chat, ollama_chat")
    headers: dict[str, list[str]] = Field(
        default_factory=dict, description="header name -> glob patterns (e.g. a tenant header)"
    )


class CheckRuleBase(Strict):
    """A rule that runs a check (models, tools, budgets, ...) on the exchange instead of a text detector."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    description: str = ""
    action: Action = Field("deny", description="deny: refuse violations; annotate: only record them")
    mode: Mode = "enforce"
    on_error: OnError = "fail_closed"
    match: CheckMatch = Field(default_factory=CheckMatch)


class Limits(Strict):
    """Consumption limits applied to every LLM request (unset = no limit)."""

    max_messages: int | None = Field(None, ge=1)
    max_prompt_tokens: int | None = Field(None, ge=1, description="estimated as characters / 4")
    max_output_tokens: int | None = Field(None, ge=1, description="cap on max_tokens / num_predict ...")
    on_output_over: Literal["clamp", "deny"] = Field(
        "clamp", description="clamp: rewrite the request's cap (and set it when absent); deny: 413")


class Settings(Strict):
    unknown_paths: Literal["allow", "deny"] = "allow"
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_stream_held_bytes: int = Field(64 * 1024, ge=1024)
    on_stream_limit: OnError = "fail_closed"
    limits: Limits = Field(default_factory=Limits)
    normalize: bool = Field(
        True, description="before every detector: NFKC, invisible/tag characters removed, look-alikes folded, "
        "embedded base64/URL/hex decoded (bounded per request)")
    track_stream_usage: bool = Field(
        False, description="ask OpenAI-style streams for usage (stream_options.include_usage) and hide it "
        "from clients that did not ask; usage is recorded in the audit record")
    annotate_header: str = Field("x-llm-policy", pattern=r"^[a-z0-9-]+$")
    max_exchange_cpu_ms: int | None = Field(
        2000, ge=1, description="detector CPU one exchange may use (both directions, streams included); past "
        "it, rules not yet run apply their on_error (fail_closed: 503 work_budget_exceeded). null: no limit")
    stream_deny_notice: Literal["auto", "error", "content", "both"] = Field(
        "auto", description="how a stream ended by a deny tells the user: the API's error event, a last "
        "assistant text chunk then the stream's normal end (chat UIs that drop error events), or both; auto "
        "picks per API (Ollama: content; OpenAI chat/completions: both; others: error)")
    audit_hits_per_rule: int = Field(
        20, ge=0, description="hits of one rule written into an audit record; the rest are only counted "
        "(`hits_omitted`)")


def _rule_kind(value: Any) -> str | None:
    """The union tag of a rule: `detector:<name>` or `check:<name>`."""
    get = value.get if isinstance(value, dict) else lambda key: getattr(value, key, None)
    if get("detector") is not None:
        return f"detector:{get('detector')}"
    if get("check") is not None:
        return f"check:{get('check')}"
    return None


@cache
def rule_model() -> Any:
    """The tagged union of rule models: one per registered detector (`detector: NAME`) and one per registered
    check (`check: NAME`)."""
    variants = []
    registries: tuple[tuple[str, type[BaseModel], dict[str, Any]], ...] = (
        ("detector", RuleBase, detectors.registry()), ("check", CheckRuleBase, checks.registry()))
    for kind, base, registry in registries:
        for name, cls in sorted(registry.items()):
            # Built at run time from the registries, so its fields are dynamic: `fields` is typed Any.
            fields: dict[str, Any] = {kind: (Literal[name], ...),
                                      "params": (cls.Params, Field(default_factory=cls.Params))}
            model = create_model(f"Rule_{kind}_{name}", __base__=base, **fields)
            variants.append(Annotated[model, Tag(f"{kind}:{name}")])
    known = (f"detectors: {', '.join(sorted(detectors.registry()))}; "
             f"checks: {', '.join(sorted(checks.registry()))}")
    return Annotated[Union[tuple(variants)], Discriminator(  # noqa: UP007
        _rule_kind, custom_error_type="unknown_rule_kind",
        custom_error_message=f"a rule needs `detector: <name>` or `check: <name>` ({known})")]


@cache
def policy_model() -> type[BaseModel]:
    return create_model(
        "Policy",
        __base__=Strict,
        version=(Literal[1], Field(description="required: a file without it is refused (truncated or not ours)")),
        allow_empty=(bool, Field(False, description="a policy with no rules is refused unless this is true")),
        settings=(Settings, Field(default_factory=Settings)),
        rules=(list[rule_model()], Field(default_factory=list)),  # type: ignore[misc,arg-type]  # dynamic union
    )


def json_schema() -> dict[str, Any]:
    schema = policy_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "extproc LLM policy"
    return schema

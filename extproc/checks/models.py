"""The `models` check: which model a request may reach, by name and by identity (supply chain: OWASP LLM03:2025,
LLM04:2026).

On the request, in this order: an alias (`chat` -> `llama3.2:3b-instruct-q4_K_M`) is rewritten in the body, so
the upstream and every rule further down see the pinned name; the (resolved) name must not match `deny`, must
match `allow` when it is set, and must not carry a floating tag (`:latest`) unless an allow pattern names that tag
itself; a name in `pins` must have the pinned digest at the Ollama digest source. On the response, the `model`
the upstream reports (body, or every streamed event that carries one) must be the model that was sent.

Codes: model_not_allowed, model_floating_tag, model_digest_mismatch, model_digest_unknown,
model_response_mismatch. An unreachable digest source is a check failure: the rule's `on_error` decides.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extproc.checks import register
from extproc.checks.base import Check
from extproc.checks.context import CheckContext
from extproc.detectors.patterns import compile_re2
from extproc.model_digests import DigestCache, normalize_digest, ollama_name, split_tag
from extproc.rules import CompiledCheck, Glob

OLLAMA_SHAPES = frozenset({"ollama_chat", "ollama_generate"})
_HEX_DIGEST = compile_re2("^[0-9a-f]{64}$")
MISMATCH = object()  # ctx.state marker: this exchange's response-model mismatch is recorded
_SERVED_FIELD_MAX = 128


class DigestSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
                     description="base URL of the Ollama server whose /api/tags lists the model digests")
    timeout: float = Field(2.0, gt=0, le=30, description="seconds one lookup may take")
    refresh: float = Field(60.0, ge=1, le=86400, description="seconds a fetched digest table is reused")


class ModelsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=list, description="glob patterns of allowed models (empty = any)")
    deny: list[str] = Field(default_factory=list, description="glob patterns of refused models (wins over allow)")
    floating_tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]] = Field(
        default_factory=lambda: ["latest"],
        description="tags (without the colon) that move: refused unless an allow pattern ends with `:<tag>`")
    aliases: dict[str, str] = Field(default_factory=dict, description="requested name -> pinned model sent on")
    pins: dict[str, str] = Field(default_factory=dict,
                                 description="model -> sha256 digest it must have at digest_source")
    digest_source: DigestSource | None = None
    response_model: Literal["off", "exact", "dated"] = Field(
        "dated", description="the model a response reports: `exact` = the model sent; `dated` also accepts a "
        "date suffix (`-2024-08-06`, `-20241022`); `off` = not checked")

    @field_validator("pins")
    @classmethod
    def _full_digests(cls, pins: dict[str, str]) -> dict[str, str]:
        normalized = {name: normalize_digest(digest) for name, digest in pins.items()}
        for name, digest in normalized.items():
            if _HEX_DIGEST.search(digest) is None:
                raise ValueError(f"pin of {name!r} must be a full sha256 digest (64 hex digits, `sha256:` optional)")
        return normalized

    @model_validator(mode="after")
    def _consistent(self) -> ModelsParams:
        if self.pins and self.digest_source is None:
            raise ValueError("`pins` need a `digest_source` to read the served digests from")
        names = ModelNames(self)
        for alias, target in self.aliases.items():
            if target in self.aliases:
                raise ValueError(f"alias {alias!r} points at another alias ({target!r}); point it at a model")
            problem = names.problem(target, ollama=False)
            if problem is not None:
                raise ValueError(f"alias {alias!r} points at {target!r}, which this rule refuses ({problem[0]})")
        return self


class ModelNames:
    """The name rules, in this order: deny, floating tags, allow (a floating tag is the more useful answer)."""

    def __init__(self, params: ModelsParams) -> None:
        self.allow = Glob(params.allow)
        self.deny = Glob(params.deny) if params.deny else None
        self.floating = frozenset(params.floating_tags)
        # A floating tag passes only where an allow pattern spells it out (`llama3:latest`, `*:latest`).
        self.floating_allowed = {tag: Glob(named) for tag in self.floating
                                 if (named := [p for p in params.allow if p.endswith(f":{tag}")])}

    def problem(self, model: str, ollama: bool) -> tuple[str, str] | None:
        """(code, reason) when `model` is refused; Ollama reads an untagged name as `:latest`."""
        names = (model, ollama_name(model)) if ollama else (model,)
        if self.deny is not None and any(self.deny(name) for name in names):
            return "model_not_allowed", "is denied"
        tag = split_tag(names[-1])[1]
        if tag in self.floating:
            glob = self.floating_allowed.get(tag)
            if glob is None or not glob(names[-1]):
                return "model_floating_tag", f"uses the floating tag ':{tag}'; pin a version tag"
        if not any(self.allow(name) for name in names):
            return "model_not_allowed", "is not in the allow list"
        return None


@register
class Models(Check):
    name = "models"
    Params = ModelsParams
    needs = frozenset({"request", "response"})
    owasp = ("LLM03:2025", "LLM04:2026")

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.config: ModelsParams = self.params  # type: ignore[assignment]
        self.names = ModelNames(self.config)
        source = self.config.digest_source
        self.digests = DigestCache(source.url, source.timeout, source.refresh) if source else None
        # The response phase is only needed to compare the served model with the requested one.
        self.needs = frozenset({"request"} if self.config.response_model == "off" else {"request", "response"})

    # ---- request -----------------------------------------------------------------------------------------
    async def on_request(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        assert ctx.parsed is not None
        model = ctx.parsed.model
        if model is None:
            if not self.names.allow.any:
                ctx.violation(rule, "model_not_allowed", f"the request names no model (rule {rule.id!r})",
                              code="model_not_allowed")
            return
        model = self._resolve_alias(rule, ctx, model)
        problem = self.names.problem(model, ollama=ctx.shape.name in OLLAMA_SHAPES)
        if problem is not None:
            code, reason = problem
            ctx.violation(rule, code, f"model {model!r} {reason} (rule {rule.id!r})", code=code)
            return
        await self._check_digest(rule, ctx, model)

    def _resolve_alias(self, rule: CompiledCheck, ctx: CheckContext, model: str) -> str:
        """The model the rule judges: an alias's target. Only an enforced rule rewrites the body; a monitor
        rule records the rewrite and judges the target, i.e. what enforcing it would decide."""
        target = self.config.aliases.get(model)
        if target is None:
            return model
        ctx.fields["requested_model"] = model
        if ctx.rewrite(rule, "model_alias"):
            assert ctx.parsed is not None
            ctx.shape.set_model(ctx.parsed.doc, target)
            ctx.parsed.model = target
            ctx.changed = True
        return target

    async def _check_digest(self, rule: CompiledCheck, ctx: CheckContext, model: str) -> None:
        pinned = self.config.pins.get(model) or self.config.pins.get(ollama_name(model))
        if pinned is None or self.digests is None:
            return
        served = await self.digests.digest_of(model)
        if served is None:
            ctx.violation(rule, "model_digest_unknown", f"model {model!r} is pinned to a digest but the digest "
                          f"source does not list it (rule {rule.id!r})", code="model_digest_unknown")
        elif served != pinned:
            ctx.fields["served_digest"] = served[:12]
            ctx.violation(rule, "model_digest_mismatch", f"model {model!r} does not have its pinned digest "
                          f"(rule {rule.id!r})", code="model_digest_mismatch")

    # ---- response ----------------------------------------------------------------------------------------
    def on_response_doc(self, rule: CompiledCheck, ctx: CheckContext, doc: Any) -> None:
        self._check_served(rule, ctx, ctx.shape.served_model(doc))

    def on_stream_payload(self, rule: CompiledCheck, ctx: CheckContext, payload: Any) -> None:
        self._check_served(rule, ctx, ctx.shape.served_model(payload))

    def _check_served(self, rule: CompiledCheck, ctx: CheckContext, served: str | None) -> None:
        requested = ctx.parsed.model if ctx.parsed is not None else None
        if self.config.response_model == "off" or served is None or requested is None:
            return
        seen = ctx.state.get(rule.id)
        # Every streamed event carries the model: judge a name once per exchange. A mismatch is recorded once
        # (monitor mode sees every event).
        if seen is MISMATCH or seen == served:
            return
        ollama = ctx.shape.name in OLLAMA_SHAPES
        if same_model(requested, served, self.config.response_model == "dated", ollama):
            ctx.state[rule.id] = served
            return
        ctx.state[rule.id] = MISMATCH
        ctx.fields["served_model"] = served[:_SERVED_FIELD_MAX]
        ctx.violation(rule, "model_response_mismatch", f"the upstream answered with another model than "
                      f"{requested!r} (rule {rule.id!r})", code="model_response_mismatch", direction="response")


def same_model(requested: str, served: str, dated: bool, ollama: bool) -> bool:
    if ollama:
        requested, served = ollama_name(requested), ollama_name(served)
    if served == requested:
        return True
    if not dated:
        return False
    stems = [requested, requested[:-len("-latest")]] if requested.endswith("-latest") else [requested]
    return any(served.startswith(stem) and _is_date_suffix(served[len(stem):]) for stem in stems)


def _is_date_suffix(text: str) -> bool:
    """`-2024-08-06` (OpenAI) or `-20241022` (Anthropic): what providers append to a requested name."""
    if len(text) == 11 and text[0] == text[5] == text[8] == "-":
        text = text[1:5] + text[6:8] + text[9:]
    elif len(text) == 9 and text[0] == "-":
        text = text[1:]
    return len(text) == 8 and text.isascii() and text.isdigit()

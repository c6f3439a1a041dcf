"""Token budgets per identity (OWASP LLM10:2025 / LLM06:2026, unbounded consumption).

At admission the check reserves the request's worst case, the estimated prompt plus the most output it may
produce (its own cap, else `default_max_output`), atomically in every window; a request that does not fit
gets 429 with `retry-after`. While a response streams, output is counted (reported usage, else characters /
4); once it overruns the reservation by more than the room the windows had left, the stream is ended with the
API's error event. When the exchange is over, the real usage (or the estimate of what was sent) replaces the
reservation. Identities are keyed digests: a raw API key never becomes a store key, a log field or a metric.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extproc import logs, metrics
from extproc.budget_store import MEMORY, BudgetStore, Outcome, RedisStore, Slot
from extproc.checks import register
from extproc.checks.base import Check
from extproc.checks.context import CheckContext
from extproc.digest import keyed_digest
from extproc.errors import BudgetExceeded, PayloadTooLarge
from extproc.limits import CHARS_PER_TOKEN, estimate_tokens
from extproc.rules import CompiledCheck
from extproc.shapes.base import Shape, get_path

_log = logs.get("extproc.checks.budgets")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ANONYMOUS = "anonymous"  # not a hex digest, so it cannot collide with one
clock = time.time  # windows are aligned to wall-clock time (all replicas agree); tests replace it


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: int = Field(ge=1, description="tokens one identity may use per window")
    window: int = Field(description='window length: seconds, or "30s", "15m", "1h", "1d" (fixed windows, '
                                    "aligned to the epoch: a 1d window resets at 00:00 UTC)")

    @field_validator("window", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> int:
        seconds = value if isinstance(value, int) and not isinstance(value, bool) else _parse_duration(value)
        if not 1 <= seconds <= 366 * 86400:
            raise ValueError("a window is between 1 second and 366 days")
        return seconds


def _parse_duration(value: Any) -> int:
    text = str(value).strip().lower()
    if len(text) >= 2 and text[-1] in UNITS and text[:-1].isdigit():
        return int(text[:-1]) * UNITS[text[-1]]
    if text.isdigit():
        return int(text)
    raise ValueError(f'{value!r} is not a duration (e.g. 3600, "30s", "15m", "1h", "1d")')


class BudgetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: Literal["api_key", "header"] = Field(
        "api_key", description="api_key: the Authorization bearer token or x-api-key; header: `header`")
    header: str | None = Field(None, pattern=r"^[a-z0-9-]+$",
                               description="request header naming the identity (a tenant, a JWT claim)")
    missing_identity: Literal["deny", "anonymous"] = Field(
        "deny", description="deny: 403 missing_identity; anonymous: one shared bucket for all such requests")
    windows: list[Window] = Field(default_factory=list, description="every window must have room")
    default_max_output: int = Field(1024, ge=0, description="output reserved when a request sets no cap")
    store: Literal["memory", "redis"] = "memory"
    redis_url: str = Field("", description="default: $EXTPROC_REDIS_URL, else redis://127.0.0.1:6379/0")
    redis_timeout: float = Field(0.25, gt=0, le=10, description="seconds to connect and per Redis reply")
    key_prefix: str = Field("extproc:budget", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    @field_validator("windows")
    @classmethod
    def _distinct_lengths(cls, windows: list[Window]) -> list[Window]:
        lengths = [w.window for w in windows]
        if len(set(lengths)) != len(lengths):
            raise ValueError("two windows of the same length would share one counter; keep the smaller")
        return windows

    @model_validator(mode="after")
    def _header_given(self) -> BudgetParams:
        if self.identity == "header" and not self.header:
            raise ValueError("identity: header needs `header` (the header's name)")
        return self


@dataclass(slots=True)
class Ledger:
    """One exchange's reservation and what its response has used so far."""

    slots: list[Slot]
    reserved: int
    prompt: int  # estimated prompt tokens
    room: int  # tokens the fullest window had left after the reservation
    output_chars: int = 0
    reported: dict[str, int] = field(default_factory=dict)
    saw_output: bool = False
    cut: bool = False

    def input_tokens(self) -> int:
        return self.reported.get("input_tokens", self.prompt)

    def output_tokens(self) -> int:
        return max(self.reported.get("output_tokens", 0), self.output_chars // CHARS_PER_TOKEN)

    def overrun(self) -> int:
        return self.input_tokens() + self.output_tokens() - self.reserved


@register
class Budgets(Check):
    name = "budgets"
    Params = BudgetParams
    needs = frozenset({"request", "response"})
    owasp = ("LLM10:2025", "LLM06:2026")

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.params: BudgetParams
        if not self.params.windows:
            raise ValueError("a budgets rule needs at least one window, e.g. windows: [{tokens: 100000, window: 1h}]")
        self.store: BudgetStore = MEMORY if self.params.store == "memory" else RedisStore(
            self.params.redis_url or os.environ.get("EXTPROC_REDIS_URL") or "redis://127.0.0.1:6379/0",
            self.params.redis_timeout)
        if self.params.store == "redis" and not (os.environ.get("EXTPROC_HMAC_KEY_FILE")
                                                 or os.environ.get("EXTPROC_HMAC_KEY")):
            _log.warning("budget_digest_key_random", reason="replicas sharing Redis need the same "
                         "EXTPROC_HMAC_KEY(_FILE) to count one identity under one key")

    async def on_request(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        assert ctx.parsed is not None
        identity = self._identity(rule, ctx)
        if identity is None:
            return
        now = clock()
        slots = self._slots(rule.id, identity, now)
        prompt = estimate_tokens(ctx.parsed)
        amount = prompt + output_reserve(ctx.shape, ctx.parsed.doc, self.params.default_max_output)
        outcome = await self._admit(rule, ctx, slots, amount, now)
        ctx.state[rule.id] = Ledger(slots, amount, prompt, outcome.room(slots))
        ctx.fields.setdefault("budgets", {})[rule.id] = {"identity": identity, "reserved": amount}
        metrics.cached_child(metrics.BUDGET_RESERVED, rule=rule.id).inc(amount)

    async def _admit(self, rule: CompiledCheck, ctx: CheckContext, slots: list[Slot], amount: int,
                     now: float) -> Outcome:
        """Reserve `amount` in every window, or refuse (429; 413 if no window could ever hold it). A rule
        that does not refuse (monitor mode, annotate) records would_deny and still counts the use."""
        smallest = min(self.params.windows, key=lambda w: w.tokens)
        if amount > smallest.tokens:
            self._refused(rule, "too_large")
            ctx.violation(rule, "budget_request_too_large",
                          f"this request may use about {amount} tokens, more than the whole budget of "
                          f"{smallest.tokens} tokens per {_duration(smallest.window)}; ask for fewer output "
                          "tokens (max_tokens) or send a shorter prompt",
                          error=PayloadTooLarge, code="budget_request_too_large")
            return await self.store.reserve(slots, amount, now, force=True)
        outcome = await self.store.reserve(slots, amount, now)
        if outcome.granted:
            return outcome
        self._refused(rule, "admission")
        retry_after = outcome.retry_after(slots, amount, now)
        ctx.violation(rule, "budget_exceeded", f"token budget used up for this window; retry in {retry_after} s",
                      error=BudgetExceeded, code="budget_exceeded", retry_after=retry_after)
        return await self.store.reserve(slots, amount, now, force=True)

    def on_response_doc(self, rule: CompiledCheck, ctx: CheckContext, doc: Any) -> None:
        ledger = ctx.state.get(rule.id)
        if ledger is not None:
            ledger.saw_output = True
            ledger.output_chars += sum(len(segment.text) for segment in ctx.shape.response_segments(doc))

    def on_stream_payload(self, rule: CompiledCheck, ctx: CheckContext, payload: Any) -> None:
        ledger = ctx.state.get(rule.id)
        if ledger is None or ledger.cut:
            return
        ledger.saw_output = True
        ledger.output_chars += sum(len(delta.text) for delta in ctx.shape.stream_deltas(payload))
        ledger.reported.update(ctx.shape.usage_of(payload) or {})
        # The room is the one seen at admission: this hook cannot wait for the store. Settling is exact.
        if ledger.overrun() > ledger.room:
            ledger.cut = True
            self._refused(rule, "stream")
            ctx.violation(rule, "budget_exceeded_mid_stream", "token budget used up while the response streamed",
                          error=BudgetExceeded, code="budget_exceeded", direction="response")

    async def on_finish(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        ledger = ctx.state.get(rule.id)
        if ledger is None:
            return
        used = charged_tokens(ledger, ctx)
        if used != ledger.reserved:
            await self.store.adjust(ledger.slots, used - ledger.reserved, clock())
        metrics.cached_child(metrics.BUDGET_SETTLED, rule=rule.id).inc(used)

    async def close(self) -> None:
        await self.store.close()

    def _identity(self, rule: CompiledCheck, ctx: CheckContext) -> str | None:
        """The keyed digest of who is asking; ANONYMOUS or a refusal when the request does not say."""
        raw = api_key(ctx.headers) if self.params.identity == "api_key" else ctx.headers.get(self.params.header or "")
        if raw and raw.strip():
            return keyed_digest(raw.strip())
        if self.params.missing_identity == "anonymous":
            return ANONYMOUS
        what = "an API key" if self.params.identity == "api_key" else f"the {self.params.header} header"
        ctx.violation(rule, "budget_identity_missing", f"requests must carry {what} (token budgets are per caller)",
                      code="missing_identity")
        return None

    def _slots(self, rule_id: str, identity: str, now: float) -> list[Slot]:
        """One counter per window; the braces make every key of one identity land in one Redis Cluster slot."""
        slots = []
        for window in self.params.windows:
            number = int(now // window.window)
            key = f"{self.params.key_prefix}:{{{rule_id}:{identity}}}:{window.window}:{number}"
            slots.append(Slot(key, window.tokens, (number + 1) * window.window))
        return slots

    @staticmethod
    def _refused(rule: CompiledCheck, phase: str) -> None:
        metrics.cached_child(metrics.BUDGET_REFUSALS, rule=rule.id, phase=phase, mode=rule.mode).inc()


def api_key(headers: dict[str, str]) -> str | None:
    """The caller's key: an Authorization bearer token, else x-api-key, else any other Authorization value."""
    authorization = headers.get("authorization", "").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    other = "" if scheme.lower() == "bearer" else authorization
    return headers.get("x-api-key", "").strip() or other or None


def output_reserve(shape: Shape, doc: Any, default: int) -> int:
    """The most output tokens the request may produce: its own cap, else `default`; times `n` choices."""
    cap = default if shape.output_limit_fields else 0  # e.g. embeddings produce no text
    for locator in shape.output_limit_fields:
        try:
            asked = get_path(doc, locator)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0:
            cap = asked
            break
    return cap * shape.choices_requested(doc)


def charged_tokens(ledger: Ledger, ctx: CheckContext) -> int:
    """What the exchange really used: reported usage, else estimates of the prompt and of the output seen.
    Nothing for an exchange the upstream refused or never answered; the whole reservation for a successful
    response the gateway did not read (a content type it does not inspect)."""
    status = ctx.response_headers.get(":status", "")
    if not status.isdigit() or not 200 <= int(status) < 300:
        return 0
    usage = {**ledger.reported, **ctx.usage}
    inputs = usage.get("input_tokens", ledger.prompt)
    if "output_tokens" in usage:
        return inputs + usage["output_tokens"]
    if ledger.saw_output:
        return inputs + ledger.output_chars // CHARS_PER_TOKEN
    return max(ledger.reserved, inputs)


def _duration(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"

"""The budgets check through a Session (no gRPC): what is reserved, when a caller gets 429 + retry-after, how
usage settles the reservation, how identities are digested, the mid-stream cut, monitor mode and the
Redis fail modes. Time is fixed by replacing the check's clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
import pytest
import structlog
from policies import policy
from sessions import handle, request_body, request_headers, response_body, response_headers, set_headers

from extproc import metrics
from extproc.budget_store import MEMORY
from extproc.checks import budgets
from extproc.digest import keyed_digest
from extproc.policy.load import PolicyError
from extproc.session import Session
from extproc.stack import free_port

HOUR = 3600
NOW = 500_000 * HOUR + 3000.0  # 600 s before an hour boundary
TOKEN = "sk-test-" + "k" * 24
BEARER = {"authorization": f"Bearer {TOKEN}"}
OK_JSON = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    MEMORY.clear()
    monkeypatch.setattr(budgets, "clock", lambda: NOW)
    yield
    MEMORY.clear()


def budget_policy(params: str, mode: str = "enforce", on_error: str = "fail_closed", extra: str = ""):
    return policy(f"""
version: 1
rules:
  - id: budget
    check: budgets
    mode: {mode}
    on_error: {on_error}
    params: {params}
{extra}""")


HOURLY_200 = budget_policy("{windows: [{tokens: 200, window: 1h}], default_max_output: 20}")


@dataclass
class Result:
    request_reply: object
    client_bytes: bytes = b""
    audit: dict = field(default_factory=dict)

    @property
    def status(self) -> int | None:
        reply = self.request_reply
        return reply.immediate_response.status.code if reply.HasField("immediate_response") else None


def drive(compiled, doc, headers=None, path="/v1/chat/completions", status=200,
          content_type="application/json", chunks=()) -> Result:
    """One exchange: request headers + body; then, if the request went on, a response of `chunks`."""
    async def run() -> Result:
        session = Session(compiled)
        await handle(session, request_headers(path, extra=headers or {}))
        result = Result(await handle(session, request_body(doc)))
        if result.status is None and chunks:
            await handle(session, response_headers(content_type, status))
            for number, chunk in enumerate(chunks, 1):
                reply = await handle(session, response_body(chunk, number == len(chunks)))
                mutation = reply.response_body.response.body_mutation
                replaced = mutation.HasField("body") or mutation.clear_body
                result.client_bytes += mutation.body if replaced else chunk
        with structlog.testing.capture_logs() as logs:
            work = session.finish()
        if work is not None:
            await work
        result.audit = next(e for e in logs if e["event"] == "exchange_completed")
        return result

    return asyncio.run(run())


def chat(chars: int, **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "x" * chars}], **extra}


def used(identity: str = TOKEN, window: int = HOUR, rule: str = "budget") -> int:
    digest = identity if identity == "anonymous" else keyed_digest(identity)
    return MEMORY.used(f"extproc:budget:{{{rule}:{digest}}}:{window}:{int(NOW // window)}", NOW)


def usage_json(prompt: int, completion: int) -> list[bytes]:
    return [orjson.dumps({**OK_JSON, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})]


# ---- params -----------------------------------------------------------------------------------------------
def test_windows_accept_seconds_and_units():
    compiled = budget_policy('{windows: [{tokens: 5, window: 90}, {tokens: 5, window: "15m"}, '
                             '{tokens: 5, window: "1h"}, {tokens: 5, window: "1d"}]}')
    assert [w.window for w in compiled.checks[0].check.params.windows] == [90, 900, 3600, 86400]


@pytest.mark.parametrize("params, problem", [
    ('{windows: [{tokens: 5, window: "1w"}]}', "not a duration"),
    ("{windows: [{tokens: 5, window: 0}]}", "between 1 second"),
    ("{}", "at least one window"),
    ("{identity: header, windows: [{tokens: 5, window: 60}]}", "needs `header`"),
    ('{windows: [{tokens: 5, window: 60}, {tokens: 9, window: "1m"}]}', "same length"),
])
def test_bad_params_are_refused_at_load_time(params, problem):
    with pytest.raises(PolicyError, match=problem):
        budget_policy(params)


# ---- reservation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, doc, output", [
    ("/v1/chat/completions", chat(400, max_tokens=50), 50),
    ("/v1/chat/completions", chat(400, max_completion_tokens=30, max_tokens=90), 30),
    ("/v1/chat/completions", chat(400), 20),  # no cap: default_max_output
    ("/v1/chat/completions", chat(400, max_tokens=10, n=3), 30),  # n choices
    ("/api/chat", chat(400, options={"num_predict": 40}), 40),
    ("/v1/embeddings", {"model": "e", "input": "x" * 400}, 0),  # no output
])
def test_the_reservation_is_the_prompt_estimate_plus_the_output_cap(path, doc, output):
    result = drive(HOURLY_200, doc, BEARER, path=path)
    assert result.status is None
    assert result.audit["budgets"]["budget"]["reserved"] == 400 // 4 + 1 + output


def test_over_budget_is_refused_with_429_and_retry_after_in_the_apis_format():
    drive(HOURLY_200, chat(40, max_tokens=50), BEARER, chunks=usage_json(100, 80))
    assert used() == 180
    result = drive(HOURLY_200, chat(40, max_tokens=50), BEARER)  # needs 11 + 50, 20 left
    immediate = result.request_reply.immediate_response
    assert immediate.status.code == 429
    assert set_headers(immediate.headers)["retry-after"] == "600"
    assert orjson.loads(immediate.body)["error"] == {
        "message": "token budget used up for this window; retry in 600 s", "type": "rate_limit_error",
        "code": "budget_exceeded"}
    assert result.audit["decision"] == "deny" and used() == 180  # a refusal reserves nothing
    anthropic = drive(HOURLY_200, {**chat(40), "max_tokens": 50}, BEARER, path="/v1/messages")
    assert orjson.loads(anthropic.request_reply.immediate_response.body)["error"]["type"] == "rate_limit_error"


def test_every_window_must_have_room_and_retry_after_waits_for_the_longest():
    compiled = budget_policy("{windows: [{tokens: 100, window: 1h}, {tokens: 150, window: 1d}]}")
    drive(compiled, chat(4, max_tokens=39), BEARER, chunks=usage_json(10, 30))
    drive(compiled, chat(4, max_tokens=79), BEARER, chunks=usage_json(10, 70))  # hour 40 + 80 > 100
    assert used() == 40 and used(window=86400) == 40
    budgets.clock = lambda: NOW + 600  # the next hour (monkeypatch restores it)
    drive(compiled, chat(4, max_tokens=79), BEARER, chunks=usage_json(10, 70))
    result = drive(compiled, chat(4, max_tokens=39), BEARER)  # the hour has 20 left, the day 30
    headers = set_headers(result.request_reply.immediate_response.headers)
    assert result.status == 429 and int(headers["retry-after"]) == 86400 - (NOW + 600) % 86400


def test_a_request_larger_than_the_whole_budget_is_413():
    result = drive(HOURLY_200, chat(40, max_tokens=500), BEARER)
    assert result.status == 413
    assert orjson.loads(result.request_reply.immediate_response.body)["error"]["code"] == "budget_request_too_large"


# ---- settling -----------------------------------------------------------------------------------------------
def test_reported_usage_replaces_the_reservation():
    result = drive(HOURLY_200, chat(400, max_tokens=50), BEARER, chunks=usage_json(120, 7))
    assert result.audit["budgets"]["budget"]["reserved"] == 151 and used() == 127


def test_ollama_stream_counts_prompt_eval_count_and_eval_count():
    lines = [{"message": {"role": "assistant", "content": "a" * 40}, "done": False},
             {"message": {"role": "assistant", "content": ""}, "done": True, "prompt_eval_count": 33,
              "eval_count": 12}]
    drive(HOURLY_200, chat(8), BEARER, path="/api/chat", content_type="application/x-ndjson",
          chunks=[orjson.dumps(line) + b"\n" for line in lines])
    assert used() == 45


def test_without_usage_the_streamed_text_is_estimated():
    events = [{"choices": [{"index": 0, "delta": {"content": "y" * 40}}]}] * 3
    chunks = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    drive(HOURLY_200, chat(40, stream=True), BEARER, content_type="text/event-stream", chunks=chunks)
    assert used() == 40 // 4 + 1 + 120 // 4


def test_an_upstream_error_refunds_the_reservation():
    drive(HOURLY_200, chat(40, max_tokens=50), BEARER, status=500, chunks=[b'{"error": "boom"}'])
    assert used() == 0


def test_a_request_denied_by_a_later_rule_refunds_the_reservation():
    compiled = budget_policy("{windows: [{tokens: 200, window: 1h}]}", extra="""
  - id: no-secrets
    detector: regex
    params: {patterns: [{label: s, pattern: "xxxx", max_length: 4}]}
""")
    result = drive(compiled, chat(40, max_tokens=50), BEARER)
    assert result.status == 403 and used() == 0


def test_an_uninspected_success_keeps_the_whole_reservation():
    drive(HOURLY_200, chat(40, max_tokens=50), BEARER, content_type="text/plain", chunks=[b"ok"])
    assert used() == 11 + 50


# ---- identity -----------------------------------------------------------------------------------------------
def test_api_keys_are_digested_and_never_stored_or_logged():
    result = drive(HOURLY_200, chat(40, max_tokens=50), BEARER, chunks=usage_json(10, 10))
    assert result.audit["budgets"]["budget"]["identity"] == keyed_digest(TOKEN)
    assert TOKEN not in str(result.audit) and all(TOKEN not in key for key in MEMORY._used)
    assert used() == 20


def test_x_api_key_identifies_and_keys_have_separate_budgets():
    drive(HOURLY_200, chat(40, max_tokens=50), {"x-api-key": "key-a"}, chunks=usage_json(100, 90))
    assert drive(HOURLY_200, chat(40, max_tokens=50), {"x-api-key": "key-a"}).status == 429
    assert drive(HOURLY_200, chat(40, max_tokens=50), {"x-api-key": "key-b"}).status is None
    assert used("key-a") == 190


def test_a_header_identity_shares_one_budget_between_keys():
    compiled = budget_policy("{identity: header, header: x-tenant, windows: [{tokens: 200, window: 1h}]}")
    drive(compiled, chat(40, max_tokens=50), {"x-tenant": "team-a", "x-api-key": "one"}, chunks=usage_json(100, 90))
    assert drive(compiled, chat(40, max_tokens=50), {"x-tenant": "team-a", "x-api-key": "two"}).status == 429
    assert used("team-a") == 190
    assert drive(compiled, chat(40, max_tokens=50), {"x-tenant": "  "}).status == 403  # blank is no identity


def test_missing_identity_is_denied_or_counted_as_anonymous():
    denied = drive(HOURLY_200, chat(40, max_tokens=50), {"authorization": "Bearer "})
    assert denied.status == 403
    assert orjson.loads(denied.request_reply.immediate_response.body)["error"]["code"] == "missing_identity"
    shared = budget_policy("{missing_identity: anonymous, windows: [{tokens: 200, window: 1h}]}")
    drive(shared, chat(40, max_tokens=50), chunks=usage_json(100, 90))
    assert used("anonymous") == 190
    assert drive(shared, chat(40, max_tokens=50)).status == 429


# ---- monitor mode -------------------------------------------------------------------------------------------
def test_monitor_mode_lets_it_through_records_would_deny_and_still_counts():
    compiled = budget_policy("{windows: [{tokens: 200, window: 1h}]}", mode="monitor")
    drive(compiled, chat(40, max_tokens=50), BEARER, chunks=usage_json(100, 90))
    result = drive(compiled, chat(40, max_tokens=50), BEARER, chunks=usage_json(10, 40))
    assert result.status is None and result.audit["would"] == ["would_deny"]
    assert used() == 240


# ---- mid-stream cut -----------------------------------------------------------------------------------------
def sse(events) -> list[bytes]:
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def test_a_stream_that_outgrows_the_budget_is_ended_with_the_error_event():
    # Reserved 1 + 20 (no cap); room 179. Each event is 25 tokens: the 8th passes 21 + 179.
    events = [{"choices": [{"index": 0, "delta": {"content": f"E{n:02d}" + "z" * 97}}]} for n in range(1, 13)]
    result = drive(HOURLY_200, chat(2, stream=True), BEARER, content_type="text/event-stream", chunks=sse(events))
    body = result.client_bytes.decode()
    assert "E07" in body and "E08" not in body and "[DONE]" not in body
    error = orjson.loads(body.rsplit("data: ", 1)[1])["error"]
    assert error["code"] == "budget_exceeded"
    assert result.audit["ended_stream_with_error"] is True and result.audit["code"] == "budget_exceeded"
    assert used() == 1 + 800 // 4  # what was counted up to the cut


def test_reported_input_usage_counts_mid_stream():
    events = [{"type": "message_start", "message": {"usage": {"input_tokens": 250, "output_tokens": 1}}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "never sent"}}]
    chunks = [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events]
    result = drive(HOURLY_200, {**chat(2), "max_tokens": 20, "stream": True}, BEARER, path="/v1/messages",
                   content_type="text/event-stream", chunks=chunks)
    assert "never sent" not in result.client_bytes.decode() and b"event: error" in result.client_bytes
    assert used() == 250 + 1


def test_a_monitored_stream_is_not_cut():
    compiled = budget_policy("{windows: [{tokens: 200, window: 1h}], default_max_output: 20}", mode="monitor")
    events = [{"choices": [{"index": 0, "delta": {"content": "z" * 100}}]}] * 10
    result = drive(compiled, chat(2, stream=True), BEARER, content_type="text/event-stream", chunks=sse(events))
    assert result.client_bytes.endswith(b"data: [DONE]\n\n") and result.audit["would"] == ["would_deny"]


# ---- Redis fail modes -----------------------------------------------------------------------------------------
def test_an_unreachable_redis_follows_the_rules_on_error():
    params = f"{{store: redis, redis_url: 'redis://127.0.0.1:{free_port()}/0', redis_timeout: 0.2, " \
             "windows: [{tokens: 200, window: 1h}]}"
    errors = metrics.ERRORS.labels(kind="check")
    before = errors._value.get()
    opened = drive(budget_policy(params, on_error="fail_open"), chat(40, max_tokens=50), BEARER,
                   chunks=usage_json(10, 10))
    assert opened.status is None and errors._value.get() == before + 1  # on_finish had nothing to settle
    closed = drive(budget_policy(params, on_error="fail_closed"), chat(40, max_tokens=50), BEARER)
    assert closed.status == 503
    assert orjson.loads(closed.request_reply.immediate_response.body)["error"]["code"] == "policy_error"


@pytest.mark.parametrize(("seconds_to_boundary", "should_retry"), [(600, "false"), (61, "false"), (60, None),
                                                                    (30, None)])
def test_a_retry_after_over_a_minute_tells_sdks_not_to_retry(seconds_to_boundary, should_retry):
    budgets.clock = lambda: NOW + 600 - seconds_to_boundary  # the hour ends in `seconds_to_boundary` s
    drive(HOURLY_200, chat(40, max_tokens=50), BEARER, chunks=usage_json(100, 80))
    headers = set_headers(drive(HOURLY_200, chat(40, max_tokens=50), BEARER).request_reply.immediate_response.headers)
    assert headers["retry-after"] == str(seconds_to_boundary)
    assert headers.get("x-should-retry") == should_retry

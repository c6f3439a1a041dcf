"""The `models` check through a whole Session exchange (no Envoy): params validation, allow/deny/floating tags,
aliases, pinned digests, the response's model (buffered and streamed), monitor mode."""

from __future__ import annotations

import orjson
import pytest
import structlog
from upstream import ScriptedUpstream

from extproc import metrics, shapes
from extproc.checks.models import ModelsParams, same_model

served_model = shapes.all_shapes()["openai_chat"].served_model
from extproc.exchange_cases import run_exchange
from extproc.policy.load import PolicyError
from tests.policies import policy

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64
RULE = """
version: 1
rules:
  - id: models
    check: models
    mode: {mode}
    on_error: {on_error}
    params:
      allow: ["llama3.2:*", "qwen2.5:*", "gpt-4o*", "claude-*", "text-embedding-3-*", "phi4:latest"]
      deny: ["llama3.2:70b*"]
      aliases: {{chat: "llama3.2:3b-instruct-q4_K_M"}}
{extra}
"""


def models_policy(mode: str = "enforce", on_error: str = "fail_closed", extra: str = ""):
    return policy(RULE.format(mode=mode, on_error=on_error, extra=extra))


ENFORCED = models_policy()
MONITORED = models_policy(mode="monitor")


def ollama(model: str, **more) -> dict:
    return {"path": "/api/chat", "request": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
            **more}


def openai(model: str, **more) -> dict:
    return {"request": {"model": model, "messages": [{"role": "user", "content": "hi"}]}, **more}


def audited(compiled, case: dict):
    """The exchange's result and its audit record."""
    with structlog.testing.capture_logs() as logs:
        result = run_exchange(compiled, case)
    [record] = [entry for entry in logs if entry["event"] == "exchange_completed"]
    return result, record


# ---- params ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "problem"), [
    ({"aliases": {"chat": "llama3:latest"}}, "model_floating_tag"),
    ({"deny": ["gpt-3*"], "aliases": {"cheap": "gpt-3.5-turbo"}}, "model_not_allowed"),
    ({"allow": ["gpt-4o"], "aliases": {"cheap": "gpt-3.5-turbo"}}, "model_not_allowed"),
    ({"aliases": {"a": "b", "b": "llama3:8b"}}, "points at another alias"),
    ({"pins": {"llama3:8b": DIGEST_A}}, "need a `digest_source`"),
    ({"pins": {"llama3:8b": "abc123"}, "digest_source": {"url": "http://h:1"}}, "full sha256 digest"),
    ({"digest_source": {"url": "ftp://h"}}, "String should match pattern"),
    ({"floating_tags": [":latest"]}, "String should match pattern"),
    ({"response_model": "loose"}, "'off', 'exact' or 'dated'"),
])
def test_inconsistent_params_are_refused_at_load(params, problem):
    with pytest.raises(ValueError, match=problem):
        ModelsParams(**params)


def test_a_bad_alias_makes_the_policy_file_invalid():
    with pytest.raises(PolicyError, match="alias 'chat' points at 'llama3:latest'"):
        policy("version: 1\nrules:\n  - {id: m, check: models, params: {aliases: {chat: 'llama3:latest'}}}\n")


def test_an_explicitly_allowed_floating_tag_may_be_an_alias_target_and_pins_accept_a_prefix():
    params = ModelsParams(allow=["phi4:latest"], aliases={"small": "phi4:latest"},
                          pins={"phi4:latest": "sha256:" + DIGEST_A.upper()}, digest_source={"url": "http://h:1"})
    assert params.pins == {"phi4:latest": DIGEST_A}


# ---- names -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "code"), [
    (ollama("llama3.2:3b"), None),
    (ollama("mistral:7b"), "model_not_allowed"),
    (ollama("llama3.2:70b-instruct"), "model_not_allowed"),  # deny wins over allow
    (ollama("llama3.2:latest"), "model_floating_tag"),
    (ollama("llama3.2"), "model_floating_tag"),  # Ollama reads an untagged name as :latest
    (ollama("phi4"), None),  # ... and `phi4:latest` is allowed by name
    (openai("gpt-4o"), None),  # OpenAI names have no tags
    (openai("o1-preview"), "model_not_allowed"),
    ({"path": "/v1/embeddings", "request": {"model": "text-embedding-3-small", "input": "x"}}, None),
    ({"path": "/v1/messages", "request": {"model": "claude-3-opus", "max_tokens": 5, "messages": []}}, None),
    ({"path": "/v1/responses", "request": {"model": "o3", "input": "hi"}}, "model_not_allowed"),
    ({"path": "/api/generate", "request": {"model": "gemma:2b", "prompt": "hi"}}, "model_not_allowed"),
    ({"path": "/v1/completions", "request": {"prompt": "hi"}}, "model_not_allowed"),  # no model named
])
def test_names_are_allowed_denied_or_refused_as_floating_for_every_shape(case, code):
    result = run_exchange(ENFORCED, case)
    assert (result.code, result.status) == ((code, 403) if code else (None, None))
    if code:
        assert result.decision == "deny"


def test_a_refusal_names_the_model_and_the_rule():
    result = run_exchange(ENFORCED, ollama("llama3.2:latest"))
    assert "'llama3.2:latest'" in result.fields["reason"] and "rule 'models'" in result.fields["reason"]


def test_an_alias_is_rewritten_and_rules_further_down_see_the_pinned_name():
    text = RULE.format(mode="enforce", on_error="fail_closed", extra="") + """
  - id: no-big-llama
    check: models
    params: {deny: ["llama3.2:3b-*"]}
"""
    result = run_exchange(ENFORCED, ollama("chat"))
    assert result.request_body["model"] == "llama3.2:3b-instruct-q4_K_M"
    assert result.request_body["messages"] == [{"role": "user", "content": "hi"}]
    assert result.fields["model"] == "llama3.2:3b-instruct-q4_K_M" and result.fields["requested_model"] == "chat"
    denied = run_exchange(policy(text), ollama("chat"))
    assert denied.code == "model_not_allowed" and "llama3.2:3b-instruct-q4_K_M" in denied.fields["reason"]


# ---- monitor mode ----------------------------------------------------------------------------------------------
def test_monitor_mode_records_would_deny_and_lets_the_request_through():
    result, record = audited(MONITORED, ollama("mistral:7b"))
    assert result.status is None and result.decision == "allow"
    assert result.request_body is None  # nothing rewritten
    assert record["would"] == ["would_deny"]
    assert [(h["label"], h["mode"], h["owasp"]) for h in record["hits"]] == [
        ("model_not_allowed", "monitor", ["LLM03:2025", "LLM04:2026"])]


def test_monitor_mode_records_an_alias_without_applying_it():
    result, record = audited(MONITORED, ollama("chat"))
    assert result.status is None and result.request_body is None
    assert result.decision == "allow" and result.fields["requested_model"] == "chat"
    assert record["would"] == ["would_redact"] and record["model"] == "chat"


# ---- the response's model --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("requested", "served", "dated", "ollama", "same"), [
    ("gpt-4o", "gpt-4o", False, False, True),
    ("gpt-4o", "gpt-4o-2024-08-06", True, False, True),
    ("gpt-4o", "gpt-4o-2024-08-06", False, False, False),
    ("gpt-4o", "gpt-4o-mini", True, False, False),
    ("gpt-4o", "gpt-4o-mini-2024-07-18", True, False, False),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", True, False, True),
    ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022", True, False, True),
    ("claude-3-5-sonnet", "claude-3-5-sonnet-2024102", True, False, False),
    ("gpt-4o", "gpt-4o-2024-0806", True, False, False),
    ("gpt-4o", "gpt-4o-2024/08/06", True, False, False),
    ("gpt-4o", "gpt-4o-\uff12\uff10\uff12\uff14\uff11\uff10\uff12\uff12", True, False, False),
    ("llama3.2", "llama3.2:latest", False, True, True),
    ("llama3.2", "llama3.2:latest", False, False, False),
])
def test_how_strictly_the_served_model_must_equal_the_requested_one(requested, served, dated, ollama, same):
    assert same_model(requested, served, dated, ollama) is same


def test_the_served_model_is_read_where_each_api_reports_it():
    assert served_model({"model": "a", "choices": []}) == "a"
    assert served_model({"type": "response.created", "response": {"model": "b"}}) == "b"
    assert served_model({"type": "message_start", "message": {"model": "c", "role": "assistant"}}) == "c"
    assert served_model({"message": {"role": "assistant", "content": "x"}}) is None
    assert served_model(["model"]) is None


def test_a_buffered_response_from_another_model_is_refused():
    case = openai("gpt-4o", response={"model": "gpt-4o-mini", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}}]})
    result = run_exchange(ENFORCED, case)
    assert (result.status, result.code) == (403, "model_response_mismatch")
    assert result.fields["served_model"] == "gpt-4o-mini"
    ok = run_exchange(ENFORCED, {**case, "response": {**case["response"], "model": "gpt-4o-2024-08-06"}})
    assert ok.status is None and b"hello" in ok.client_bytes


def chunk(model: str, text: str) -> dict:
    return {"model": model, "choices": [{"index": 0, "delta": {"content": text}}]}


def test_a_stream_from_another_model_ends_with_the_apis_error_event():
    case = openai("gpt-4o", stream=[chunk("gpt-4o-2024-08-06", "first "), chunk("gpt-4o-mini", "second"), "[DONE]"])
    case["request"]["stream"] = True
    result = run_exchange(ENFORCED, case)
    assert result.code == "model_response_mismatch" and result.fields["ended_stream_with_error"] is True
    events = [orjson.loads(e[6:]) for e in result.client_bytes.decode().split("\n\n") if e.startswith("data: {")]
    assert events[0]["choices"][0]["delta"]["content"] == "first "
    assert events[-1]["error"]["code"] == "model_response_mismatch"
    assert b"second" not in result.client_bytes and b"[DONE]" not in result.client_bytes


def test_in_monitor_mode_a_mismatched_stream_is_recorded_once_and_delivered():
    case = openai("gpt-4o", stream=[chunk("gpt-4o-mini", "a"), chunk("gpt-4o-mini", "b"), "[DONE]"])
    case["request"]["stream"] = True
    result, record = audited(MONITORED, case)
    assert result.decision == "allow" and result.code is None
    assert [h["label"] for h in record["hits"]] == ["model_response_mismatch"] and record["would"] == ["would_deny"]
    assert result.client_bytes.count(b'"content":') == 2 and result.client_bytes.endswith(b"[DONE]\n\n")
    assert result.fields["served_model"] == "gpt-4o-mini"


def test_an_ollama_stream_answering_for_the_untagged_name_matches():
    lines = [{"model": "phi4:latest", "message": {"role": "assistant", "content": "hi"}, "done": False},
             {"model": "phi4:latest", "message": {"role": "assistant", "content": ""}, "done": True}]
    result = run_exchange(ENFORCED, ollama("phi4", stream=lines))
    assert result.code is None and result.client_bytes.count(b"\n") == 2


def test_response_model_off_checks_nothing():
    relaxed = policy("version: 1\nrules:\n  - {id: m, check: models, params: {response_model: 'off'}}\n")
    result = run_exchange(relaxed, openai("gpt-4o", response={"model": "other", "choices": []}))
    assert result.status is None


# ---- pinned digests --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source():
    with ScriptedUpstream() as up:
        yield up


def pinned_policy(url: str, on_error: str = "fail_closed", mode: str = "enforce"):
    extra = f"""      pins: {{"llama3.2:3b-instruct-q4_K_M": "sha256:{DIGEST_A}", "qwen2.5:7b": "{DIGEST_A}",
              "phi4:latest": "{DIGEST_B}"}}
      digest_source: {{url: "{url}", timeout: 1, refresh: 60}}"""
    return models_policy(mode=mode, on_error=on_error, extra=extra)


def serve_tags(up: ScriptedUpstream) -> None:
    table = [{"name": "llama3.2:3b-instruct-q4_K_M", "model": "llama3.2:3b-instruct-q4_K_M", "digest": DIGEST_A},
             {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "digest": "sha256:" + DIGEST_B}]
    up.reset()
    up.respond_always("/api/tags", headers={"content-type": "application/json"}, body=orjson.dumps({"models": table}))


@pytest.mark.parametrize(("model", "code"), [
    ("chat", None),  # the alias target is pinned and its digest matches
    ("qwen2.5:7b", "model_digest_mismatch"),
    ("phi4", "model_digest_unknown"),  # pinned as phi4:latest; the source does not have it
    ("llama3.2:1b", None),  # not pinned: no lookup needed
])
def test_pinned_models_must_have_their_digest_at_the_source(source, model, code):
    serve_tags(source)
    result = run_exchange(pinned_policy(source.url), ollama(model))
    assert result.code == code and result.status == (403 if code else None)


def test_the_digest_table_is_fetched_once_per_check_instance(source):
    serve_tags(source)
    pinned = pinned_policy(source.url)
    for model in ("chat", "qwen2.5:7b", "chat"):
        run_exchange(pinned, ollama(model))
    assert [r.path for r in source.requests] == ["/api/tags"]


def check_failures() -> float:
    return metrics.ERRORS.labels(kind="check")._value.get()


def test_an_unreachable_source_fails_closed_with_503_in_the_apis_format_or_open_when_told():
    with ScriptedUpstream() as gone:
        url = gone.url
    before = check_failures()
    closed, record = audited(pinned_policy(url), ollama("chat"))
    assert (closed.status, closed.code) == (503, "policy_error") and record["status_sent"] == 503
    assert check_failures() == before + 1
    opened, _ = audited(pinned_policy(url, on_error="fail_open"), ollama("chat"))
    assert opened.status is None and opened.request_body["model"] == "llama3.2:3b-instruct-q4_K_M"

"""Policy files: schema validation with line numbers, compile, rule matching, reload."""

import asyncio

import pytest
from policies import policy, regex_rule, rules

from extproc.policy.compile import Exchange
from extproc.policy.load import PolicyError, load_policy_text
from extproc.policy.reload import PolicyHolder, default_policy_text
from extproc.policy.schema import json_schema


def test_unknown_key_is_rejected_with_its_line():
    text = "version: 1\nrules:\n  - id: a\n    detector: regex\n    params: {patterns: [{label: x, pattern: a}]}\n    acton: deny\n"
    with pytest.raises(PolicyError) as err:
        load_policy_text(text, "p.yaml")
    message = str(err.value)
    assert "line 6" in message and "acton" in message and "unknown key" in message


def test_wrong_enum_value_names_the_field_and_line():
    text = "version: 1\nrules:\n  - id: a\n    detector: regex\n    action: block\n    params: {patterns: [{label: x, pattern: a}]}\n"
    with pytest.raises(PolicyError) as err:
        load_policy_text(text, "p.yaml")
    assert "line 5" in str(err.value) and "action" in str(err.value)


def test_unknown_detector_is_rejected():
    with pytest.raises(PolicyError) as err:
        load_policy_text("version: 1\nrules:\n  - id: a\n    detector: nope\n")
    assert "detector" in str(err.value)


def test_pattern_rejected_by_re2_fails_validation_clearly():
    text = 'version: 1\nrules:\n  - id: a\n    detector: regex\n    params: {patterns: [{label: x, pattern: "(a)\\\\1"}]}\n'
    with pytest.raises(PolicyError) as err:
        load_policy_text(text)
    assert "RE2" in str(err.value) and "line 5" in str(err.value)


def test_duplicate_rule_ids_are_rejected():
    with pytest.raises(PolicyError) as err:
        rules(regex_rule("a", "deny"), regex_rule("b", "deny"), regex_rule("a", "redact"))
    assert "rule id 'a' is used 2 times (lines 4, 20)" in str(err.value)


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(PolicyError, match="YAML"):
        load_policy_text("rules: [unclosed")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy_text("- a\n- b\n")


def test_default_policy_is_valid_and_has_both_directions():
    compiled = policy(default_policy_text())
    assert compiled.has_rules("request") and compiled.has_rules("response")


def test_match_by_path_model_header_and_shape():
    compiled = policy("""version: 1
rules:
  - id: scoped
    detector: regex
    params: {patterns: [{label: x, pattern: a}]}
    match: {paths: ["/v1/*"], models: ["llama3*", "qwen?"], headers: {x-tenant: ["team-a"]}, shapes: [openai_chat]}
""")
    ok = Exchange("/v1/chat/completions", "openai_chat", "llama3.2:3b", {"x-tenant": "team-a"})
    assert compiled.rules_for("request", ok)
    for exchange in (
        Exchange("/api/chat", "openai_chat", "llama3", {"x-tenant": "team-a"}),
        Exchange("/v1/chat/completions", "openai_chat", "mistral", {"x-tenant": "team-a"}),
        Exchange("/v1/chat/completions", "openai_chat", "qwen25", {"x-tenant": "team-a"}),
        Exchange("/v1/chat/completions", "openai_chat", "llama3", {"x-tenant": "team-b"}),
        Exchange("/v1/chat/completions", "openai_chat", "llama3", {}),
        Exchange("/v1/chat/completions", "ollama_chat", "llama3", {"x-tenant": "team-a"}),
    ):
        assert not compiled.rules_for("request", exchange), exchange


def test_glob_special_characters_are_literal():
    compiled = policy("""version: 1
rules:
  - id: r
    detector: regex
    params: {patterns: [{label: x, pattern: a}]}
    match: {models: ["a.b+(c)"]}
""")
    assert compiled.rules_for("request", Exchange("/", None, "a.b+(c)", {}))
    assert not compiled.rules_for("request", Exchange("/", None, "aXb+(c)", {}))


def test_rules_sharing_a_detector_share_one_instance():
    compiled = rules(regex_rule("a", "deny", "request"), regex_rule("b", "redact", "response"))
    assert compiled.rules[0].detector is compiled.rules[1].detector


def test_json_schema_lists_detectors_and_forbids_extra_keys():
    schema = json_schema()
    text = str(schema)
    assert "regex" in text and "additionalProperties" in text


def test_reload_swaps_on_change_and_keeps_last_good_on_invalid(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n" + regex_rule("one", "deny"))
    holder = PolicyHolder(str(path))
    first = holder.current
    assert [r.id for r in first.rules] == ["one"]
    assert asyncio.run(holder.reload_if_changed()) is False  # unchanged content
    path.write_text("version: 1\nrules:\n" + regex_rule("two", "deny"))
    assert asyncio.run(holder.reload_if_changed()) is False  # changed: loaded once the next poll agrees
    assert asyncio.run(holder.reload_if_changed()) is True
    assert [r.id for r in holder.current.rules] == ["two"]
    assert [r.id for r in first.rules] == ["one"]  # snapshots held by sessions are untouched
    path.write_text("version: 1\nrules: [{id: bad, detector: regex, nonsense: 1}]\n")
    assert asyncio.run(holder.reload_if_changed()) is False
    assert asyncio.run(holder.reload_if_changed()) is False
    assert [r.id for r in holder.current.rules] == ["two"]


def test_reload_follows_a_configmap_style_symlink_swap(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "policy.yaml").write_text("version: 1\nrules:\n" + regex_rule("old", "deny"))
    (tmp_path / "v2" / "policy.yaml").write_text("version: 1\nrules:\n" + regex_rule("new", "deny"))
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    holder = PolicyHolder(str(tmp_path / "policy.yaml"))
    assert holder.current.rules[0].id == "old"
    (tmp_path / "..data_tmp").symlink_to("v2")
    (tmp_path / "..data_tmp").rename(tmp_path / "..data")
    assert asyncio.run(holder.reload_if_changed()) is False
    assert asyncio.run(holder.reload_if_changed()) is True
    assert holder.current.rules[0].id == "new"


def test_a_replaced_policy_has_its_checks_closed_after_the_retire_delay(tmp_path, monkeypatch):
    from extproc.policy import reload

    monkeypatch.setattr(reload, "RETIRE_AFTER_SECONDS", 0.01)
    closed: list[str] = []

    async def fake_close(self):
        closed.append(self.name)

    monkeypatch.setattr("extproc.checks.budgets.Budgets.close", fake_close, raising=True)
    budget = "version: 1\nrules:\n  - id: b\n    check: budgets\n    params: {windows: [{tokens: 1000, window: 1h}]}\n"
    path = tmp_path / "p.yaml"
    path.write_text(budget)
    holder = PolicyHolder(str(path))

    async def swap_and_wait():
        path.write_text("version: 1\nrules:\n" + regex_rule("two", "deny"))
        assert await holder.reload_if_changed() is False
        assert await holder.reload_if_changed() is True
        assert closed == []  # in-flight exchanges may still use the old policy's checks
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.01)

    asyncio.run(swap_and_wait())
    assert closed == ["budgets"]

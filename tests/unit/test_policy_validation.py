"""Policy files that would silently weaken enforcement are refused; hot reload never loads a half-written file."""

import asyncio

import pytest
import structlog
from policies import regex_rule

from extproc.policy.load import PolicyError, load_policy_text
from extproc.policy.reload import PolicyHolder

ONE_RULE = "version: 1\nrules:\n" + regex_rule("keys", "deny") + regex_rule("mails", "redact")


def refused(text: str) -> str:
    with pytest.raises(PolicyError) as err:
        load_policy_text(text, "p.yaml")
    return str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_is_refused(text):
    assert "p.yaml: the file is empty" in refused(text)


def test_a_missing_version_is_refused():
    assert "`version: 1` is missing" in refused("rules:\n" + regex_rule("a", "deny"))
    assert "version" in refused("version: 2\nrules:\n" + regex_rule("a", "deny"))


@pytest.mark.parametrize("text", ["version: 1\nrules: []\n", "version: 1\n", "version: 1\nsettings: {}\n"])
def test_no_rules_needs_an_explicit_allow_empty(text):
    assert "allow_empty: true" in refused(text)
    allowed = load_policy_text("allow_empty: true\n" + text)
    assert allowed.model.rules == [] and allowed.model.allow_empty is True


def test_a_policy_truncated_after_rules_is_refused():
    assert "rules" in refused(ONE_RULE[: ONE_RULE.index("rules:") + len("rules:")] + "\n")


@pytest.mark.parametrize(("field", "value", "suggestion"), [
    ("roles", "usr", "'user'"), ("roles", "assistent", "'assistant'"),
    ("shapes", "openai-chat", "'openai_chat'"), ("shapes", "ollama_chat_v2", "'ollama_chat'"),
])
def test_unknown_roles_and_shapes_say_what_was_meant(field, value, suggestion):
    text = ("version: 1\nrules:\n  - id: a\n    detector: secrets\n    match:\n"
            f"      {field}: [user, {value}]\n" if field == "roles" else
            "version: 1\nrules:\n  - id: a\n    detector: secrets\n    match:\n"
            f"      {field}: [openai_chat, {value}]\n")
    message = refused(text)
    assert f"line 6: rules.0.match.{field}.1" in message
    assert f"{value!r}" in message and f"did you mean {suggestion}?" in message


def test_known_roles_and_shapes_load():
    text = ("version: 1\nrules:\n  - id: a\n    detector: secrets\n"
            "    match: {roles: [user, tool, system], shapes: [openai_chat, anthropic_messages]}\n")
    rule = load_policy_text(text).model.rules[0]
    assert rule.match.roles == ["user", "tool", "system"]


def test_check_rules_refuse_unknown_shapes_too():
    message = refused("version: 1\nrules:\n  - id: m\n    check: models\n    match: {shapes: [ollama]}\n")
    assert "line 5" in message and "unknown shape 'ollama'" in message


@pytest.mark.parametrize(("kind", "name", "suggestion"), [
    ("detector", "secret", "'secrets'"), ("detector", "regexp", "'regex'"), ("check", "budget", "'budgets'"),
])
def test_unknown_detector_or_check_names_say_what_was_meant(kind, name, suggestion):
    message = refused(f"version: 1\nrules:\n  - id: ok\n    detector: secrets\n  - id: a\n    {kind}: {name}\n")
    assert f"line 6: rules.1.{kind}: unknown {kind} {name!r} (did you mean {suggestion}?)" in message


def test_an_unknown_name_with_nothing_close_lists_the_known_ones():
    message = refused("version: 1\nrules:\n  - id: a\n    detector: zzzzzz\n")
    assert "did you mean" not in message and "known: " in message and "secrets" in message


def test_duplicate_ids_name_every_line():
    text = ("version: 1\nrules:\n  - {id: a, detector: secrets}\n  - {id: b, detector: secrets}\n"
            "  - {id: a, detector: secrets}\n  - {id: b, detector: secrets}\n  - {id: a, detector: secrets}\n")
    message = refused(text)
    assert "rule id 'a' is used 3 times (lines 3, 5, 7)" in message
    assert "rule id 'b' is used 2 times (lines 4, 6)" in message


# ---- hot reload --------------------------------------------------------------------------------------------

def poll(holder: PolicyHolder) -> bool:
    return asyncio.run(holder.reload_if_changed())


def ids(holder: PolicyHolder) -> list[str]:
    return [r.id for r in holder.current.rules]


def test_a_write_in_progress_is_never_loaded(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n" + regex_rule("old", "deny"))
    holder = PolicyHolder(str(path))
    new = "version: 1\nrules:\n" + regex_rule("first", "deny") + regex_rule("second", "redact")
    path.write_text(new[: new.index("- id: second")])  # a valid policy with one rule fewer
    assert poll(holder) is False
    path.write_text(new)  # the writer finishes before the next poll
    assert poll(holder) is False and ids(holder) == ["old"]  # changed again: not stable yet
    assert poll(holder) is True
    assert ids(holder) == ["first", "second"]


def test_a_truncated_file_stable_across_polls_is_still_loaded_only_if_valid(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(ONE_RULE)
    holder = PolicyHolder(str(path))
    path.write_text(ONE_RULE[: ONE_RULE.index("rules:")])  # "version: 1\n": no rules, no allow_empty
    assert [poll(holder), poll(holder), poll(holder)] == [False, False, False]
    assert ids(holder) == ["keys", "mails"]


def test_a_content_that_changes_back_is_not_reloaded(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(ONE_RULE)
    holder = PolicyHolder(str(path))
    before = holder.current
    path.write_text(ONE_RULE[:-10])
    assert poll(holder) is False
    path.write_text(ONE_RULE)
    assert poll(holder) is False and poll(holder) is False and holder.current is before


def test_a_reload_that_drops_every_rule_is_rejected_even_when_allowed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("allow_empty: true\n" + ONE_RULE)
    holder = PolicyHolder(str(path))
    path.write_text("allow_empty: true\nversion: 1\nrules: []\n")
    with structlog.testing.capture_logs() as logs:
        assert [poll(holder), poll(holder)] == [False, False]
    assert ids(holder) == ["keys", "mails"]
    rejected = [e for e in logs if e["event"] == "policy_reload_rejected"]
    assert len(rejected) == 1 and "would drop all 2 active rules" in rejected[0]["error"]


def test_an_empty_policy_may_gain_rules_by_reload(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nallow_empty: true\nrules: []\n")
    holder = PolicyHolder(str(path))
    path.write_text(ONE_RULE)
    assert [poll(holder), poll(holder)] == [False, True] and ids(holder) == ["keys", "mails"]


def test_a_reload_that_removes_rules_logs_their_ids(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(ONE_RULE + regex_rule("third", "annotate"))
    holder = PolicyHolder(str(path))
    path.write_text("version: 1\nrules:\n" + regex_rule("mails", "redact") + regex_rule("new", "deny"))
    with structlog.testing.capture_logs() as logs:
        assert [poll(holder), poll(holder)] == [False, True]
    dropped = [e for e in logs if e["event"] == "policy_rules_dropped"]
    assert len(dropped) == 1 and dropped[0]["rules"] == ["keys", "third"]


def test_a_reload_that_only_adds_rules_logs_no_drop(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n" + regex_rule("keys", "deny"))
    holder = PolicyHolder(str(path))
    path.write_text(ONE_RULE)
    with structlog.testing.capture_logs() as logs:
        assert [poll(holder), poll(holder)] == [False, True]
    assert not [e for e in logs if e["event"] == "policy_rules_dropped"]


def test_alert_series_exist_at_zero_once_a_policy_is_active(tmp_path):
    from prometheus_client import generate_latest

    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n" + regex_rule("zero-series-rule", "deny", mode="monitor"))
    PolicyHolder(str(path))
    exposed = generate_latest().decode()
    assert 'extproc_rule_hits_total{action="deny",mode="monitor",rule="zero-series-rule"} 0.0' in exposed
    for line in ('extproc_policy_reloads_total{result="invalid"}', 'extproc_policy_reloads_total{result="unreadable"}',
                 'extproc_errors_total{kind="internal"}', 'extproc_errors_total{kind="detector"}',
                 'extproc_requests_total{decision="deny",shape="openai_chat"}'):
        assert line in exposed, line

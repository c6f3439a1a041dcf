"""The shadow policy sees the same messages, changes nothing, and its differences land in the active
session's audit record and in metrics."""

import structlog
from policies import regex_rule, rules
from prometheus_client import REGISTRY
from sessions import chat, request_body, request_headers

from extproc.session import Session
from extproc.shadow import Shadow

SECRET = "sk-" + "Q" * 12 + "w" * 12
ACTIVE = rules(regex_rule("watch", "deny", "request", mode="monitor"))
CANDIDATE = rules(regex_rule("block", "deny", "request"))


def run(active, candidate, text):
    session, shadow = Session(active), Shadow(candidate)
    session.shadow_of = shadow
    replies = []
    for message in (request_headers(), request_body(chat(text))):
        replies.append(session.handle(message))
        shadow.observe(message)
    with structlog.testing.capture_logs() as logs:
        session.finish()
    records = [entry for entry in logs if entry["event"] == "exchange_completed"]
    return replies, records


def differences(rule):
    return REGISTRY.get_sample_value("extproc_shadow_differences_total", {"rule": rule}) or 0.0


def test_a_candidate_that_would_deny_is_recorded_and_changes_nothing():
    before = differences("block")
    replies, records = run(ACTIVE, CANDIDATE, f"key {SECRET}")
    assert not replies[-1].HasField("immediate_response")  # the active policy only monitors
    [record] = records  # one audit record: the shadow writes none of its own
    assert record["decision"] == "allow"
    assert record["shadow"]["decision"] == "deny" and record["shadow"]["differs"] is True
    assert set(record["shadow"]["changed_rules"]) == {"watch", "block"}
    assert differences("block") == before + 1


def test_the_same_decision_is_not_a_difference():
    _, records = run(ACTIVE, ACTIVE, "nothing to see")
    assert records[0]["shadow"] == {"policy": ACTIVE.digest[:12], "decision": "allow", "rules": [],
                                    "differs": False}

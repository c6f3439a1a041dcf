"""decide(): the one place an outcome is decided. Precedence deny > error > redact > annotate > allow,
monitor rules only record `would_*`, a failed detector is an `error` outcome when its rule fails closed and
nothing when it fails open, redaction spans come per segment, merged."""

import pytest
from policies import policy

from extproc.errors import PolicyDenied, PolicyUnavailable
from extproc.model import Finding
from extproc.policy.engine import Hit, decide, scan_text


def rule(rule_id, action="deny", mode="enforce", on_error="fail_closed"):
    compiled = policy(f"""version: 1
rules:
  - id: {rule_id}
    detector: regex
    action: {action}
    mode: {mode}
    on_error: {on_error}
    params: {{patterns: [{{label: k, pattern: "K[0-9]+", max_length: 12}}]}}
""")
    return compiled.rules[0]


def hit(compiled_rule, start=0, end=3, action_taken=None):
    return Hit(compiled_rule, Finding("regex", "k", start, end), "K12", "request", action_taken=action_taken)


@pytest.mark.parametrize(("actions", "expected"), [
    ([], "allow"), (["annotate"], "annotate"), (["annotate", "redact"], "redact"),
    (["redact", "deny", "annotate"], "deny"), (["redact", "error"], "error"), (["error", "deny"], "deny"),
])
def test_precedence(actions, expected):
    hits = [hit(rule(f"r{i}", "deny" if a == "error" else a), action_taken="error" if a == "error" else None)
            for i, a in enumerate(actions)]
    decision = decide(hits)
    assert decision.action == expected
    assert isinstance(decision.refusal, {"deny": PolicyDenied, "error": PolicyUnavailable}.get(expected,
                                                                                              type(None)))


def test_monitor_rules_record_would_and_change_nothing():
    decision = decide([hit(rule("watch", "deny", mode="monitor")), hit(rule("mark", "annotate"))])
    assert decision.action == "annotate" and decision.would == ("would_deny",) and decision.refusal is None
    assert decision.rules == ("mark", "watch")


def test_spans_are_merged_per_segment():
    redact = rule("r", "redact")
    decision = decide([(2, hit(redact, 0, 3)), (2, hit(redact, 2, 5)), (0, hit(redact, 4, 6))])
    assert {index: [(s.start, s.end) for s in spans] for index, spans in decision.spans.items()} == \
        {2: [(0, 5)], 0: [(4, 6)]}


class Boom:
    name, normalized, owasp = "boom", False, ()

    def find(self, text):
        raise RuntimeError("detector bug")


@pytest.mark.parametrize(("on_error", "expected"), [("fail_closed", "error"), ("fail_open", "allow")])
def test_a_failing_detector_is_an_outcome_by_on_error(on_error, expected):
    import dataclasses
    failing = dataclasses.replace(rule("r", "redact", on_error=on_error), detector=Boom())
    decision = decide(scan_text((failing,), "K12", "user", "request", normalized=False))
    assert decision.action == expected
    if expected == "error":
        assert decision.refusal.status == 503 and "boom" in decision.refusal.message


@pytest.mark.parametrize(("on_error", "expected"), [("fail_closed", "error"), ("fail_open", "allow")])
def test_a_spent_work_budget_applies_on_error_to_the_rules_not_yet_run(on_error, expected):
    from extproc.work_budget import WorkBudget
    work = WorkBudget(1)  # one millisecond of detector CPU for the whole exchange
    compiled = rule("r", "redact", on_error=on_error)
    text = "x K1 " * 40_000
    first = scan_text((compiled,), text, "user", "request", normalized=False, work=work)
    assert work.spent and first  # the detector that was running finishes; its findings stand
    decision = decide(scan_text((compiled,), "K2", "user", "request", normalized=False, work=work))
    assert decision.action == expected
    if expected == "error":
        assert decision.refusal.code == "work_budget_exceeded" and decision.refusal.status == 503

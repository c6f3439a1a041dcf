"""Audit records stay small whatever the prompt: at most `audit_hits_per_rule` hits of each rule are written,
the rest only counted, while metrics still count every hit."""

import orjson
import structlog
from policies import policy, policy_text, regex_rule
from sessions import start

from extproc import metrics
from extproc.session import Session

SECRET = "sk-" + "Q" * 12 + "w" * 12
TICKET_RULE = regex_rule("tickets", "redact", "request", pattern="TICKET-[0-9]{4}", label="ticket",
                         max_length=11)
SECRET_RULE = regex_rule("secrets", "redact", "request")


def _record(settings: str, content: str) -> dict:
    session = Session(policy(settings + policy_text(SECRET_RULE, TICKET_RULE)))
    start(session, content)
    with structlog.testing.capture_logs() as logs:
        session.finish()
    [record] = [entry for entry in logs if entry["event"] == "exchange_completed"]
    return record


def _tickets(count: int) -> str:
    return " ".join(f"TICKET-{n:04d}" for n in range(count))


def test_hits_beyond_the_cap_are_counted_not_written():
    record = _record("settings: {audit_hits_per_rule: 5}\n", f"{_tickets(1000)} and {SECRET}")
    by_rule = [hit["rule"] for hit in record["hits"]]
    assert by_rule.count("tickets") == 5 and by_rule.count("secrets") == 1
    assert record["hits_omitted"] == {"tickets": 995}
    assert [hit["start"] for hit in record["hits"] if hit["rule"] == "tickets"] == [0, 12, 24, 36, 48]


def test_default_cap_keeps_a_huge_prompt_s_record_small():
    content = _tickets(20_000)  # 240 KB of matches
    record = _record("", content)
    assert len(record["hits"]) == 20 and record["hits_omitted"] == {"tickets": 19_980}
    assert len(orjson.dumps(record, default=str)) < 20_000


def test_under_the_cap_nothing_is_omitted():
    record = _record("", _tickets(20))
    assert len(record["hits"]) == 20 and "hits_omitted" not in record


def test_metrics_still_count_every_hit():
    counter = metrics.RULE_HITS.labels(rule="tickets", action="redact", mode="enforce")
    before = counter._value.get()
    _record("settings: {audit_hits_per_rule: 0}\n", _tickets(300))
    assert counter._value.get() - before == 300

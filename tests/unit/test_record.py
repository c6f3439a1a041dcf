"""The typed decision record renders only what was set, with what checks add beside it."""

from extproc.record import ExchangeRecord


def test_only_set_fields_and_check_fields_are_rendered():
    record = ExchangeRecord(policy="abc", path="/v1/chat/completions", status=200)
    record.checks["served_model"] = "m"
    assert record.as_fields() == {"policy": "abc", "path": "/v1/chat/completions", "status": 200,
                                  "served_model": "m"}
    assert not record.refused()
    record.code = "policy_violation"
    assert record.refused() and record.as_fields()["code"] == "policy_violation"

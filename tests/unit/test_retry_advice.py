"""429 replies: a long retry-after also says `x-should-retry: false`, so SDKs raise instead of sleeping."""

import pytest
from sessions import set_headers

from extproc import envoy


@pytest.mark.parametrize(("headers", "expected"), [
    ([("retry-after", "61")], "false"), ([("Retry-After", "86400")], "false"), ([("retry-after", "60")], None),
    ([("retry-after", "1")], None), ([], None), ([("x-llm-policy", "deny")], None),
])
def test_immediate_replies_advise_against_long_retries(headers, expected):
    reply = envoy.immediate_reply(429, b"{}", set_headers=[("x-llm-policy", "deny"), *headers])
    sent = set_headers(reply.immediate_response.headers)
    assert sent.get("x-should-retry") == expected
    assert sent["x-llm-policy"] == "deny" and sent["content-type"] == "application/json"

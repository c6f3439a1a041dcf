"""The audit digest key is rotated by rewriting the key file while the service runs (no restart): exchanges
after the `digest_key_rotated` log line carry digests under the new key; the key never appears in the log."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from conftest import make_stack
from policies import policy_text, regex_rule

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
SECRET = "sk-" + "Rt5Yu8Io2Pa6Sd9Fg3Hj7Kl1"
KEY1, KEY2 = "rotation-key-one-0123456789", "rotation-key-two-9876543210"
POLICY = policy_text(regex_rule("deny-in", "deny", "request"))


def expected(key: str) -> str:
    return hmac.new(key.encode(), SECRET.encode(), hashlib.sha256).hexdigest()[:16]


def denied_digest(stack, request_id: str) -> str:
    payload = {"model": "m", "messages": [{"role": "user", "content": f"key {SECRET}"}]}
    assert stack.post(CHAT, payload, headers={"x-request-id": request_id}).status == 403
    [hit] = stack.audit_for(request_id)["hits"]
    return hit["digest"]


def wait_for_log(stack, event: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while f'"{event}"' not in stack.log("service"):
        assert time.monotonic() < deadline, f"no {event} in the service log"
        time.sleep(0.02)


def test_key_file_rotation_without_restart(request, tmp_path_factory, upstream, tmp_path):
    key_file = tmp_path / "hmac.key"
    key_file.write_text(KEY1 + "\n")
    stack = make_stack(request, tmp_path_factory, upstream, POLICY,
                       service_args=("--digest-key-file", str(key_file)))
    service_pid = stack.procs["service"].pid
    assert denied_digest(stack, "before-rotation") == expected(KEY1)
    tmp = tmp_path / "hmac.key.tmp"
    tmp.write_text(KEY2 + "\n")
    tmp.replace(key_file)
    wait_for_log(stack, "digest_key_rotated")
    assert denied_digest(stack, "after-rotation") == expected(KEY2)
    assert stack.procs["service"].pid == service_pid and stack.procs["service"].poll() is None
    log = stack.log("service")
    assert KEY1 not in log and KEY2 not in log and SECRET not in log

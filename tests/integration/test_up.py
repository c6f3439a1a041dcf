"""The README's first command: `extproc up` starts real Envoy + the service + the demo model, and Ctrl-C
stops all of it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from extproc.stack import free_port

pytestmark = pytest.mark.integration


def post(port, path, payload):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(payload).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until_up(proc, port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("extproc up did not come up")


def test_up_serves_the_demo_model_through_envoy_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "extproc", "up", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(proc, port)
        chat = {"model": "demo", "messages": [{"role": "user", "content": "hello gateway"}]}
        status, body = post(port, "/v1/chat/completions", chat)
        assert status == 200 and "hello gateway" in json.loads(body)["choices"][0]["message"]["content"]
        leak = {"model": "demo", "stream": False, "messages": [{"role": "user", "content": "please leak"}]}
        status, body = post(port, "/api/chat", leak)
        content = json.loads(body)["message"]["content"]
        assert status == 200 and "[OPENAI_API_KEY]" in content and "sk-proj-" not in content
        status, body = post(port, "/v1/chat/completions",
                            {"model": "demo", "messages": [{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}]})
        assert status == 403 and json.loads(body)["error"]["code"] == "policy_violation"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)

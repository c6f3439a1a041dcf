"""The README's first command: `extproc up` starts real Envoy + the service + the demo model, and Ctrl-C
stops all of it; killing `up` in any way stops its children too."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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


ANY_PORTS = ["--service-port", "0", "--metrics-port", "0", "--admin-port", "0"]


def start_up(port):
    return subprocess.Popen([sys.executable, "-m", "extproc", "up", "--port", str(port), *ANY_PORTS],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def children_of(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_up_serves_the_demo_model_through_envoy_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    proc = start_up(port)
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
                            {"model": "demo", "messages": [{"role": "user", "content": "key AKIAZ7QW3RT5YUI2OP4L"}]})
        assert status == 403 and json.loads(body)["error"]["code"] == "policy_violation"
        status, body = post(port, "/v1/responses", {"model": "demo", "input": "please leak"})
        text = json.loads(body)["output"][0]["content"][0]["text"]
        assert status == 200 and "[OPENAI_API_KEY]" in text and "sk-proj-" not in text
        for path in ("/api/ps", "/api/tags", "/v1/models"):  # what chat UIs list models with
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                assert reply.status == 200 and json.loads(reply.read())
        assert post(port, "/api/show", {"model": "demo-echo:latest"})[0] == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)


def read_banner(proc):
    lines = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = proc.stdout.readline().decode()
        assert line, "".join(lines)
        lines.append(line)
    return "".join(lines)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM])
def test_children_exit_when_up_is_killed_or_its_terminal_closes(how):
    port = free_port()
    proc = start_up(port)
    try:
        banner = read_banner(proc)
        children = children_of(proc.pid)
        assert len(children) == 3  # demo upstream, service, Envoy
        metrics = re.search(r"metrics: +(http://\S+/metrics)", banner).group(1)
        with urllib.request.urlopen(metrics, timeout=5) as reply:
            exposed = reply.read().decode()
        assert 'extproc_policy_reloads_total{result="invalid"} 0.0' in exposed
        assert 'extproc_errors_total{kind="internal"} 0.0' in exposed
        admin = re.search(r"Envoy admin: +(http://\S+)", banner).group(1)
        with urllib.request.urlopen(f"{admin}/ready", timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(how)  # only `up` itself, not its process group
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if alive(pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):  # the children stay in up's process group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

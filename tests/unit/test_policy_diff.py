"""`policy diff`: recorded exchanges (audit records of capture rules, or bare exchanges) replayed through two
policies; the differences and a per-rule summary are printed. Run as the CLI is run."""

import json
import subprocess
import sys

import structlog
from policies import policy
from sessions import chat, request_body, request_headers

from extproc.session import Session

AWS_KEY = "AKIAZ7QW3RT5YUI2OP4L"
ACTIVE = "version: 1\nrules:\n  - {id: watch, detector: secrets, direction: request, action: deny, mode: monitor, capture: true}\n"
CANDIDATE = "version: 1\nrules:\n  - {id: block, detector: secrets, direction: request, action: deny}\n"


def recorded_audit_line(text):
    """An audit record written by the active policy, as the service logs it."""
    session = Session(policy(ACTIVE))
    session.handle(request_headers())
    session.handle(request_body(chat(text)))
    with structlog.testing.capture_logs() as logs:
        session.finish()
    [record] = [entry for entry in logs if entry["event"] == "exchange_completed"]
    return record


def test_a_capture_rule_records_the_exchange_before_redaction():
    record = recorded_audit_line(f"use {AWS_KEY}")
    assert record["exchange"]["path"] == "/v1/chat/completions"
    assert AWS_KEY in record["exchange"]["request"]["messages"][0]["content"]
    assert "exchange" not in recorded_audit_line("nothing here")  # no capture hit, nothing recorded


def test_policy_diff_reports_what_the_candidate_would_change(tmp_path):
    (tmp_path / "active.yaml").write_text(ACTIVE)
    (tmp_path / "candidate.yaml").write_text(CANDIDATE)
    lines = [json.dumps(recorded_audit_line(f"use {AWS_KEY}")),
             json.dumps({"path": "/v1/chat/completions", "request": chat("hello")})]
    (tmp_path / "traffic.jsonl").write_text("\n".join(lines) + "\n")
    run = subprocess.run([sys.executable, "-m", "extproc", "policy", "diff", str(tmp_path / "active.yaml"),
                          str(tmp_path / "candidate.yaml"), "--traffic", str(tmp_path / "traffic.jsonl")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = run.stdout.strip().splitlines()
    assert out[0].startswith("line 1 /v1/chat/completions: allow -> deny")
    assert out[-1] == "1 of 2 exchanges differ; by rule: block: 1, watch: 1"
    assert AWS_KEY not in run.stdout

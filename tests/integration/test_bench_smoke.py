"""Smoke run of the benchmark's leak check: `python -m bench --quick --only leak` against real Envoy + service.

Needs nothing from apt (the quick run uses the asyncio client, not wrk) and takes a few seconds. It checks
that no planted secret / e-mail reaches the client through the default and full policies, that no clean
text is altered, and that the control (no rules) does leak every planted value, so the checker itself works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_leak_check_finds_no_leaks(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "leak", "--out", str(tmp_path)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_path] = tmp_path.glob("bench-quick-*.json")
    [md_path] = tmp_path.glob("bench-quick-*.md")
    results = json.loads(json_path.read_text())

    rows = {row["target"]: row for row in results["leak"]}
    assert set(rows) == {"none", "default", "full"}
    for name in ("default", "full"):
        row = rows[name]
        assert row["planted"] > 0
        assert (row["leaked"], row["altered"], row["failed"]) == (0, 0, 0), row["notes"]
    control = rows["none"]
    assert control["leaked"] == control["planted"] > 0, "the checker must see leaks when nothing is redacted"
    assert all(goal["met"] for goal in results["goals"]), results["goals"]

    table = md_path.read_text()
    assert "## Leak check" in table
    for label in ("+ service, no rules (control: must leak)", "+ service, default policy", "+ service, full policy"):
        assert f"| {label} | 16 |" in table
    assert f"{results['meta']['cores']} cores" in table
    assert "python -m bench --quick --only leak" in table


def test_quick_stream_run_measures_the_no_op_floor(tmp_path):
    """The floor target answers through real Envoy: every stream passes byte for byte through the no-op
    ext_proc, which sees every record (one message per paced event), and the goals table carries its figures."""
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "stream", "--out", str(tmp_path)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_path] = tmp_path.glob("bench-quick-*.json")
    results = json.loads(json_path.read_text())
    rows = {row["target"]: row for row in results["stream"]}
    assert {"baseline", "noop", "none", "default", "full"} <= set(rows)
    noop = rows["noop"]
    assert noop["altered_or_failed"] == 0
    assert noop["messages_per_stream"] > 150  # 200 paced events: Envoy sends (nearly) one message per event
    assert noop["first_byte_added_ms"] > 0
    floors = {g["goal"]: g["floor"] for g in results["goals"]}
    assert floors["<= 2 ms added time to first byte, default policy"] == round(noop["first_byte_added_ms"], 3)
    assert floors["<= 50 µs service CPU per streamed chunk, default policy"] == round(noop["service_cpu_us_per_msg"])

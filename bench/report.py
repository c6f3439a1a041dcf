"""Machine facts, goals and the Markdown / JSON output of a benchmark run."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from bench.stacks import ROOT
from extproc import detectors
from extproc.stack import envoy_binary

GOALS = {
    "p50_added_ms_c1": 1.0,  # full policy, 1 KB, c=1
    "rps_x_c16": 0.2,  # full policy, 1 KB, c=16, vs plain Envoy
    "first_byte_added_ms": 2.0,  # full policy (issue 7) and default policy (issue 3), paced stream, c=1
    "chunk_cpu_us": 50.0,  # service CPU per streamed chunk, default policy, paced stream, c=1 (issue 3)
    "leaks": 0,
}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "?"


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20, cwd=ROOT)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def meta(command: str, plan: Any, policies: dict, envoy_concurrency: int) -> dict[str, Any]:
    envoy = _run([envoy_binary(), "--version"]).split("version:")[-1].strip()
    wrk = _run(["wrk", "-v"]).splitlines()[0] if plan.use_wrk else "not used"
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "command": command,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cores": os.cpu_count(), "cpu": cpu, "started_loadavg": loadavg(),
        "platform": platform.platform(), "python": sys.version.split()[0],
        "versions": {"envoy": envoy, "grpcio": _version("grpcio"), "protobuf": _version("protobuf"),
                     "orjson": _version("orjson"), "google-re2": _version("google-re2"),
                     "uvloop (upstream, optional)": _version("uvloop"), "wrk": wrk},
        "git": f"{commit}{' (dirty)' if dirty else ''}",
        "plan": {"quick": plan.quick, "duration_s": plan.duration, "rounds": plan.rounds, "sizes": plan.sizes,
                 "conns": plan.conns, "stream_conns": plan.stream_conns, "stream_gaps_us": plan.stream_gaps_us,
                 "leak_cases": plan.leak_cases, "scaling_conns": plan.scaling_conns,
                 "load_generator": "wrk (Lua POST script)" if plan.use_wrk else "asyncio client (bench/client.py)",
                 "envoy_concurrency": envoy_concurrency},
        "detectors": sorted(detectors.registry()),
        "policies": {name: {"rules": p.rules, "notes": p.notes} for name, p in policies.items()},
    }


def _find(rows: list[dict], **key: Any) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in key.items())), None)


# (goal, scenario, metric, policy, where, cell key, passes)
GOAL_CELLS = (
    ("added p50 <= 1.0 ms at c=1, full policy", "chat", "p50_added_ms", "full", "1 KB chat, c=1",
     {"size": 1024, "conns": 1}, lambda v: v <= GOALS["p50_added_ms_c1"]),
    (">= 0.2x baseline throughput at c=16, full policy", "chat", "rps_x", "full", "1 KB chat, c=16",
     {"size": 1024, "conns": 16}, lambda v: v >= GOALS["rps_x_c16"]),
    ("<= 2 ms added time to first byte, full policy", "stream", "first_byte_added_ms", "full",
     "200 events 2 ms apart, c=1", {"gap_us": 2000, "conns": 1}, lambda v: v <= GOALS["first_byte_added_ms"]),
    ("<= 2 ms added time to first byte, default policy", "stream", "first_byte_added_ms", "default",
     "200 events 2 ms apart, c=1", {"gap_us": 2000, "conns": 1}, lambda v: v <= GOALS["first_byte_added_ms"]),
    ("<= 50 µs service CPU per streamed chunk, default policy", "stream", "service_cpu_us_per_msg", "default",
     "200 events 2 ms apart, c=1 (gRPC included)", {"gap_us": 2000, "conns": 1},
     lambda v: v <= GOALS["chunk_cpu_us"]),
)


def goals(results: dict) -> list[dict[str, Any]]:
    """Each goal with our figure and, when measured, the no-op ext_proc's in the same cell (the floor)."""
    out = []
    for goal, scenario, metric, policy, where, key, passes in GOAL_CELLS:
        rows = results.get(scenario, [])
        value, floor = (_figure(rows, metric, target, key) for target in (policy, "noop"))
        if value is not None:
            out.append({"goal": goal, "measured": value, "met": passes(value), "where": where, "floor": floor})
    for row in results.get("leak", []):
        if row["target"] in ("default", "full"):
            out.append({"goal": f"0 leaks, {row['target']} policy", "measured": row["leaked"],
                        "met": row["leaked"] == 0 and row["altered"] == 0 and row["failed"] == 0,
                        "where": f"{row['planted']} planted values; clean text altered: {row['altered']}",
                        "floor": None})
    return out


def _figure(rows: list[dict], metric: str, target: str, key: dict[str, Any]) -> float | None:
    row = _find(rows, target=target, **key)
    if not row or row.get(metric) is None:
        return None
    return round(row[metric]) if metric == "service_cpu_us_per_msg" else round(row[metric], 3)


def _f(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _signed(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}"


LABELS = {"upstream": "upstream direct", "baseline": "plain Envoy", "noop": "+ no-op ext_proc (floor)",
          "none": "+ service, no rules",
          "default": "+ service, default policy", "full": "+ service, full policy",
          "full-2w": "+ service, full policy, 2 workers"}


def markdown(results: dict) -> str:
    m = results["meta"]
    plan = m["plan"]
    lines = [
        "# llm-extproc benchmark",
        "",
        f"`{m['command']}` — {m['date']}, git {m['git']}",
        "",
        (f"- machine: {m['cores']} cores ({m['cpu']}), {m['platform']}; load average at start {m['started_loadavg']},"
        f" at end {m.get('finished_loadavg', '?')} (the machine was shared: figures are noisy, medians of"
        f" {plan['rounds']} interleaved round(s))"),
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        (f"- load generator: {plan['load_generator']}, {plan['duration_s']} s per cell; Envoy --concurrency"
        f" {plan['envoy_concurrency']}; every process on the same 2 cores (client, Envoy, service, upstream)"),
        f"- detectors registered: {', '.join(m['detectors'])}",
    ]
    for name, info in m["policies"].items():
        notes = f" ({'; '.join(info['notes'])})" if info["notes"] else ""
        lines.append(f"- policy `{name}`: {info['rules']} rule(s){notes}")
    if results.get("goals"):
        lines += ["", "## Goals", "", ("The floor is the same figure for a Python ext_proc that does no work at"
                  " all (bench/noop_service.py: same phases, same Envoy filter), measured in the same run."), "",
                  "| goal | measured | met | floor (no-op ext_proc) | where |", "|---|---|---|---|---|"]
        for g in results["goals"]:
            met = "yes" if g["met"] else "**no**"
            lines.append(f"| {g['goal']} | {g['measured']} | {met} | {_f(g.get('floor'), 3)} | {g['where']} |")
    if results.get("chat"):
        lines += ["", "## Non-streamed chat completions (request and response bodies of the given size)", "",
                  ("| body | conns | target | req/s | × baseline | p50 ms | p50 added | p50 × | p99 ms | p99 added |"
                  " p99 × | service CPU µs/req | Envoy CPU µs/req | errors |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(results["chat"], key=lambda r: (r["size"], r["conns"], _order(r["target"]))):
            lines.append(
                f"| {r['size'] // 1024} KB | {r['conns']} | {LABELS[r['target']]} | {_f(r['rps'], 0)} | "
                f"{_f(r.get('rps_x'))} | {_f(r['p50_ms'], 3)} | {_signed(r.get('p50_added_ms'), 3)} | "
                f"{_f(r.get('p50_x'))} | {_f(r['p99_ms'], 3)} | {_signed(r.get('p99_added_ms'), 3)} | "
                f"{_f(r.get('p99_x'))} | {_f(r['service_cpu_us'], 0)} | {_f(r['envoy_cpu_us'], 0)} | {r['errors']} |")
    if results.get("stream"):
        lines += ["", (f"## Streamed responses ({200} SSE events; first byte = first body byte, first text = first"
                  " record with content; medians per stream)"), "",
                  ("| events | conns | target | first byte ms | added | first text ms | added | total ms | added |"
                  " ext_proc msgs/stream | service CPU µs/msg | service CPU ms/stream | altered/failed |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(results["stream"], key=lambda r: (-r["gap_us"], r["conns"], _order(r["target"]))):
            pacing = f"{r['gap_us'] / 1000:g} ms apart" if r["gap_us"] else "back to back"
            lines.append(
                f"| {pacing} | {r['conns']} | {LABELS[r['target']]} | {_f(r['first_byte_ms'], 2)} | "
                f"{_signed(r.get('first_byte_added_ms'))} | {_f(r['first_text_ms'], 2)} | "
                f"{_signed(r.get('first_text_added_ms'))} | {_f(r['total_ms'], 1)} | "
                f"{_signed(r.get('total_added_ms'), 1)} | {_f(r['messages_per_stream'], 1)} | "
                f"{_f(r['service_cpu_us_per_msg'], 0)} | {_f(r['service_cpu_ms_per_stream'], 2)} | "
                f"{r['altered_or_failed']} |")
    if results.get("leak"):
        lines += ["", "## Leak check (secrets / e-mails split across SSE events; half of the responses planted)",
                  "", ("| target | responses | planted values | reached the client | clean text altered |"
                  " failed responses |"), "|---|---|---|---|---|---|"]
        for r in results["leak"]:
            name = LABELS[r["target"]] + (" (control: must leak)" if r["target"] == "none" else "")
            lines.append(f"| {name} | {r['responses']} | {r['planted']} | {r['leaked']} | {r['altered']} |"
                         f" {r['failed']} |")
        for r in results["leak"]:
            if r["target"] != "none" and r["notes"]:
                lines.append(f"\n{r['target']}: " + "; ".join(r["notes"][:5]))
    if results.get("scaling"):
        lines += ["", "## Multi-worker scaling (full policy, 1 KB chat)", "",
                  "| conns | workers | req/s | × 1 worker | p50 ms | p99 ms | service CPU µs/req | errors |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sorted(results["scaling"], key=lambda r: (r["conns"], r["workers"])):
            lines.append(f"| {r['conns']} | {r['workers']} | {_f(r['rps'], 0)} | {_f(r.get('rps_x_1worker'))} | "
                         f"{_f(r['p50_ms'], 3)} | {_f(r['p99_ms'], 3)} | {_f(r['service_cpu_us'], 0)} | "
                         f"{r['errors']} |")
    errors = results.get("service_log_errors") or {}
    if any(errors.values()):
        lines += ["", "Service log lines at level error: " + ", ".join(f"{k} {v}" for k, v in errors.items())]
    lines += ["", f"Wall time {m.get('wall_seconds', '?')} s."]
    return "\n".join(lines) + "\n"


def _order(target: str) -> int:
    return list(LABELS).index(target)


def write(directory: str, results: dict, markdown_text: str, quick: bool) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = os.path.join(directory, f"bench-{'quick-' if quick else ''}{stamp}")
    with open(base + ".md", "w") as handle:
        handle.write(markdown_text)
    with open(base + ".json", "w") as handle:
        json.dump(results, handle, indent=1, default=str)
    return base + ".md", base + ".json"

"""The benchmark scenarios: non-streamed chat, streamed responses, leak check, multi-worker scaling.

Every scenario runs its targets interleaved within each round (target order rotated per round) and reports
the median over rounds; the figures of each round are kept in the JSON."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import client, payloads, wrk
from bench.policies import BenchPolicy
from bench.stacks import Lab, Target

PATH = "/v1/chat/completions"
SCENARIOS = ("chat", "stream", "leak", "scaling")


@dataclass
class Plan:
    quick: bool
    only: set[str]
    duration: float
    rounds: int
    sizes: list[int]
    conns: list[int]
    stream_conns: list[int]
    stream_gaps_us: list[int]
    leak_cases: int
    scaling_conns: list[int]
    use_wrk: bool
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="extproc-bench-"))

    @classmethod
    def make(cls, quick: bool, only: set[str], duration: float | None, rounds: int | None,
             client_kind: str) -> Plan:
        use_wrk = client_kind == "wrk" or (client_kind == "auto" and not quick and wrk.available())
        if client_kind == "wrk" and not wrk.available():
            raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
        if quick:
            return cls(True, only, duration or 1.0, rounds or 1, [1024], [16], [1], [2000], 16, [16], use_wrk)
        return cls(False, only, duration or 5.0, rounds or 3, [1024, 16384], [1, 16, 64], [1, 16], [2000, 0],
                   48, [16, 64], use_wrk)

    def wants(self, scenario: str) -> bool:
        return not self.only or scenario in self.only


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def _rotate(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


# ---- non-streamed chat -----------------------------------------------------------------------------------

def _chat_headers(size: int) -> dict[str, str]:
    return {"x-bench-kind": "json", "x-bench-size": str(size)}


def load_once(plan: Plan, target: Target, size: int, conns: int) -> dict[str, Any]:
    body = payloads.chat_request(size)
    cpu0, env0 = target.service_cpu(), target.envoy_cpu()
    if plan.use_wrk:
        script = wrk.write_script(plan.workdir, f"chat{size}", _chat_headers(size), body)
        res = wrk.run(f"http://127.0.0.1:{target.port}{PATH}", script, conns, plan.duration)
        requests, rps, p50, p99, errors = res.requests, res.rps, res.p50, res.p99, res.errors
    else:
        raw = client.raw_request("127.0.0.1", target.port, PATH, _chat_headers(size), body)
        res2 = asyncio.run(client.load("127.0.0.1", target.port, raw, conns, plan.duration, warmup=0.2))
        requests, rps, p50, p99, errors = res2.requests, res2.rps, res2.pct(50), res2.pct(99), res2.errors
    cpu, env = target.service_cpu() - cpu0, target.envoy_cpu() - env0
    per = max(requests, 1)
    return {"requests": requests, "rps": rps, "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "errors": errors,
            "service_cpu_us": cpu / per * 1e6 if target.has_service else None,
            "envoy_cpu_us": env / per * 1e6 if target.envoy_pid else None}


def chat(plan: Plan, targets: list[Target], log: Callable[[str], None]) -> list[dict[str, Any]]:
    cells = {(s, c, t.name): [] for s in plan.sizes for c in plan.conns for t in targets}
    for r in range(plan.rounds):
        for size in plan.sizes:
            for conns in plan.conns:
                for target in _rotate(targets, r):
                    res = load_once(plan, target, size, conns)
                    cells[(size, conns, target.name)].append(res)
                    log(f"chat r{r + 1} {size}B c={conns} {target.name}: {res['rps']:.0f} req/s "
                        f"p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms err {res['errors']}")
                    time.sleep(0.2)
    return _summarise(cells, ("size", "conns", "target"),
                      ("rps", "p50_ms", "p99_ms", "service_cpu_us", "envoy_cpu_us"), "errors")


def _summarise(cells: dict, keys: tuple[str, ...], metrics: tuple[str, ...], summed: str) -> list[dict]:
    rows = []
    for key, runs in cells.items():
        row = dict(zip(keys, key))
        for metric in metrics:
            row[metric] = _median([run[metric] for run in runs])
        row[summed] = sum(run[summed] for run in runs)
        row["rounds"] = runs
        rows.append(row)
    by_key = {tuple(row[k] for k in keys): row for row in rows}
    for row in rows:  # ratios to plain Envoy in the same cell
        base = by_key.get(tuple(row[k] if k != "target" else "baseline" for k in keys))
        if base is None or base is row:
            continue
        for metric in metrics:
            if metric.endswith("_ms") and base.get(metric):
                row[metric.replace("_ms", "_added_ms")] = row[metric] - base[metric]
                row[metric.replace("_ms", "_x")] = row[metric] / base[metric]
        if "rps" in metrics and base.get("rps"):
            row["rps_x"] = row["rps"] / base["rps"]
    return rows


# ---- streams ---------------------------------------------------------------------------------------------

def stream_once(target: Target, gap_us: int, conns: int, count: int) -> dict[str, Any]:
    headers = {"x-bench-kind": "sse", "x-bench-events": str(payloads.STREAM_EVENTS), "x-bench-gap-us": str(gap_us)}
    raw = client.raw_request("127.0.0.1", target.port, PATH, headers, payloads.chat_request(1024, stream=True))
    expected = b"".join(payloads.bench_stream())
    cpu0 = target.service_cpu()
    msgs0 = target.messages() if target.has_service else 0
    replies = asyncio.run(client.run_streams("127.0.0.1", target.port, lambda i: raw, conns, count))
    cpu = target.service_cpu() - cpu0
    msgs = (target.messages() - msgs0) if target.has_service else 0
    bad = sum(1 for r in replies if r.status != 200 or r.body != expected)
    return {
        "streams": len(replies), "altered_or_failed": bad,
        "first_byte_ms": _median([(r.t_first_byte - r.t_sent) * 1e3 for r in replies]),
        "first_text_ms": _median([(r.time_to_first_text() or float("nan")) * 1e3 for r in replies]),
        "total_ms": _median([(r.t_end - r.t_sent) * 1e3 for r in replies]),
        "messages_per_stream": msgs / len(replies) if target.has_service else None,
        "service_cpu_us_per_msg": cpu / msgs * 1e6 if msgs else None,
        "service_cpu_ms_per_stream": cpu / len(replies) * 1e3 if target.has_service else None,
    }


def stream(plan: Plan, targets: list[Target], log: Callable[[str], None]) -> list[dict[str, Any]]:
    cells = {(g, c, t.name): [] for g in plan.stream_gaps_us for c in plan.stream_conns for t in targets}
    for r in range(plan.rounds):
        for gap in plan.stream_gaps_us:
            for conns in plan.stream_conns:
                if plan.quick:
                    count = 3
                elif gap:
                    count = max(8, conns * 3)
                else:
                    count = max(20, conns * 3)
                for target in _rotate(targets, r):
                    res = stream_once(target, gap, conns, count)
                    cells[(gap, conns, target.name)].append(res)
                    log(f"stream r{r + 1} gap {gap}us c={conns} {target.name}: first byte "
                        f"{res['first_byte_ms']:.2f} ms, first text {res['first_text_ms']:.2f} ms, total "
                        f"{res['total_ms']:.1f} ms, msgs/stream {res['messages_per_stream']}, bad "
                        f"{res['altered_or_failed']}")
                    time.sleep(0.2)
    return _summarise(cells, ("gap_us", "conns", "target"),
                      ("first_byte_ms", "first_text_ms", "total_ms", "messages_per_stream",
                       "service_cpu_us_per_msg", "service_cpu_ms_per_stream"), "altered_or_failed")


# ---- leak check ------------------------------------------------------------------------------------------

def leak(plan: Plan, targets: list[Target], log: Callable[[str], None]) -> list[dict[str, Any]]:
    cases = [payloads.leak_case(seed) for seed in range(plan.leak_cases)]
    raws = [client.raw_request("127.0.0.1", 0, PATH, {"x-bench-kind": "leak", "x-bench-seed": str(c.seed)},
                               c.request_body()) for c in cases]
    rows = []
    for target in targets:
        result = payloads.LeakResult()

        def check(i: int, reply: client.Reply, result: payloads.LeakResult = result) -> None:
            payloads.check_reply(cases[i], reply.status, reply.body, result)

        asyncio.run(client.run_streams("127.0.0.1", target.port, lambda i: raws[i], 4, len(cases), check))
        row = {"target": target.name, "responses": len(cases),
               "planted_responses": sum(1 for c in cases if c.planted), "planted": result.planted,
               "leaked": result.leaked, "altered": result.altered, "failed": result.failed,
               "modes": sorted({c.mode for c in cases}), "notes": result.notes[:20]}
        rows.append(row)
        log(f"leak {target.name}: planted {result.planted}, leaked {result.leaked}, altered {result.altered}, "
            f"failed {result.failed}")
    return rows


# ---- multi-worker scaling --------------------------------------------------------------------------------

def scaling(plan: Plan, targets: list[Target], log: Callable[[str], None]) -> list[dict[str, Any]]:
    cells = {(c, t.name): [] for c in plan.scaling_conns for t in targets}
    for r in range(plan.rounds):
        for conns in plan.scaling_conns:
            for target in _rotate(targets, r):
                res = load_once(plan, target, 1024, conns)
                cells[(conns, target.name)].append(res)
                log(f"scaling r{r + 1} c={conns} {target.name}: {res['rps']:.0f} req/s p50 {res['p50_ms']:.2f} ms")
                time.sleep(0.2)
    rows = _summarise(cells, ("conns", "target"), ("rps", "p50_ms", "p99_ms", "service_cpu_us"), "errors")
    one = {row["conns"]: row for row in rows if row["target"] == "full"}
    for row in rows:
        row["workers"] = 2 if row["target"] == "full-2w" else 1
        if one.get(row["conns"], {}).get("rps"):
            row["rps_x_1worker"] = row["rps"] / one[row["conns"]]["rps"]
    return rows


# ---- setup -----------------------------------------------------------------------------------------------

LABELS = {"upstream": "upstream direct", "baseline": "plain Envoy (baseline)", "noop": "Envoy + no-op ext_proc (floor)",
          "none": "Envoy + service, no rules",
          "default": "Envoy + service, default policy", "full": "Envoy + service, full policy",
          "full-2w": "Envoy + service, full policy, 2 workers"}


def start(plan: Plan, lab: Lab, policies: dict[str, BenchPolicy]) -> dict[str, Target]:
    needed = set()
    if plan.wants("chat"):
        needed |= {"upstream", "baseline", "noop", "none", "default", "full"}
    if plan.wants("stream"):
        needed |= {"baseline", "noop", "none", "default", "full"}
    if plan.wants("leak"):
        needed |= {"none", "default", "full"}
    if plan.wants("scaling"):
        needed |= {"full", "full-2w"}
    targets: dict[str, Target] = {}
    up = lab.upstream()
    lab.wait()
    if "upstream" in needed:
        targets["upstream"] = up
    if "baseline" in needed:
        targets["baseline"] = lab.plain_envoy(up)
    if "noop" in needed:
        targets["noop"] = lab.noop_stack(up)
    for name in ("none", "default", "full"):
        if name in needed:
            targets[name] = lab.service_stack(name, LABELS[name], policies[name].text, up)
    if "full-2w" in needed:
        targets["full-2w"] = lab.service_stack("full-2w", LABELS["full-2w"], policies["full"].text, up, workers=2)
    lab.wait()
    for target in targets.values():
        target.label = LABELS[target.name]
        _verify(target)
    return targets


def _verify(target: Target) -> None:
    """One request of each kind before measuring: the stack answers, and the service is in the path."""
    body = payloads.chat_request(1024)
    raw = client.raw_request("127.0.0.1", target.port, PATH, _chat_headers(1024), body)

    async def once() -> client.Reply:
        conn = client.Conn("127.0.0.1", target.port)
        try:
            for _ in range(50):  # warm-up: caches, code paths, connections
                reply = await conn.request(raw)
            return reply
        finally:
            conn.close()

    reply = asyncio.run(once())
    if reply.status != 200 or reply.body != payloads.chat_response(1024):
        raise SystemExit(f"{target.name}: unexpected reply {reply.status} {reply.body[:200]!r}")
    # With no rules the service tells Envoy to skip the response phases, so only policies with response
    # rules annotate the response.
    expect_header = target.has_service and target.name not in ("none", "noop")
    if expect_header != ("x-llm-policy" in reply.headers):
        raise SystemExit(f"{target.name}: x-llm-policy header {'missing' if expect_header else 'present'}")

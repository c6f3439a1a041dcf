"""Soak: steady mixed traffic through real Envoy + the service for minutes, sampling the service's memory and
error counters; passes when memory stays flat after warm-up, no error counter grows and nothing leaks.

    python -m bench.soak --minutes 30 [--rps 20] [--out DIR]

Traffic (paced, not closed-loop, so the rate is the same at minute 1 and minute 30): the bench leak cases
(OpenAI SSE back to back, paced and split across TCP writes, and buffered JSON; half with 1-4 planted
secrets/e-mail addresses that must come back redacted), plain JSON answers, and prompts with a pasted key
(403). Writes soak.md and soak.json to --out (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field

from bench import client, payloads, policies
from bench.stacks import Lab, Target

PATH = "/v1/chat/completions"
LEAK_SEEDS = 96
PASTED_KEY = "sk-proj-" + "Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc"


@dataclass
class Sample:
    t: float  # seconds since the traffic started
    rss_mib: float
    requests: int  # answered by the client so far
    service_errors: float  # sum of extproc_errors_total + extproc_streams_refused_total
    failures: int  # client-side: unexpected status, error event, leak, altered text


@dataclass
class Tally:
    sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    leak: payloads.LeakResult = field(default_factory=payloads.LeakResult)
    notes: list[str] = field(default_factory=list)


# ---- traffic ---------------------------------------------------------------------------------------------

def request_for(i: int) -> tuple[str, bytes, object]:
    """(kind, raw HTTP request, what to check) for the i-th request of the mix."""
    slot = i % 8
    if slot == 6:
        body = payloads.chat_request(0, user_text=f"Deploy with {PASTED_KEY} please.")
        return "prompt_with_key", client.raw_request("127.0.0.1", 0, PATH, {}, body), 403
    if slot == 7:
        headers = {"x-bench-kind": "json", "x-bench-size": "4096"}
        return "plain_json", client.raw_request("127.0.0.1", 0, PATH, headers, payloads.chat_request(512)), 200
    case = payloads.leak_case((i // 8 * 6 + slot) % LEAK_SEEDS)
    headers = {"x-bench-kind": "leak", "x-bench-seed": str(case.seed)}
    return f"leak_{case.mode}", client.raw_request("127.0.0.1", 0, PATH, headers, case.request_body()), case


def check(reply: client.Reply, expect: object, tally: Tally) -> None:
    if isinstance(expect, int):
        if reply.status != expect:
            _fail(tally, f"status {reply.status}, expected {expect}")
        return
    case: payloads.LeakCase = expect  # type: ignore[assignment]
    before = (tally.leak.leaked, tally.leak.altered)
    failed = payloads.check_reply(case, reply.status, reply.body, tally.leak)
    if failed is not None:
        _fail(tally, failed)
    elif (tally.leak.leaked, tally.leak.altered) != before:
        _fail(tally, f"seed {case.seed} ({case.mode}): leaked or altered")


def _fail(tally: Tally, note: str) -> None:
    tally.failures += 1
    if len(tally.notes) < 20:
        tally.notes.append(note)


async def traffic(target: Target, rps: float, conns: int, seconds: float, tally: Tally) -> None:
    """`conns` connections, each sending at rps/conns per second on a fixed schedule."""
    start = time.perf_counter()
    end = start + seconds
    gap = conns / rps

    async def worker(w: int) -> None:
        conn = client.Conn("127.0.0.1", target.port)
        n = 0
        try:
            # A request that falls behind its slot is sent late, not skipped, but nothing starts after the
            # end: the report gives the rate achieved.
            while (due := start + (n + w / conns) * gap) < end and time.perf_counter() < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                kind, raw, expect = request_for(n * conns + w)
                try:
                    check(await conn.request(raw), expect, tally)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    conn.close()
                    _fail(tally, f"{kind}: {type(exc).__name__}")
                tally.sent += 1
                tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
                n += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker(w) for w in range(conns)))


# ---- sampling --------------------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def service_errors(target: Target) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{target.metrics_ports[0]}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    wanted = ("extproc_errors_total{", "extproc_streams_refused_total ")
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(wanted))


async def sampler(target: Target, every: float, seconds: float, tally: Tally, samples: list[Sample]) -> None:
    start = time.perf_counter()
    while (t := time.perf_counter() - start) <= seconds + every / 2:
        samples.append(Sample(round(t, 1), round(rss_mib(target.service_pids[0]), 2), tally.sent,
                              await asyncio.to_thread(service_errors, target), tally.failures))
        await asyncio.sleep(every)


# ---- verdict and report ----------------------------------------------------------------------------------

def verdict(samples: list[Sample], warmup: float, max_growth_mib: float) -> dict:
    """Memory: median RSS of the last quarter minus that of the first quarter after warm-up. Errors: growth of
    the service's error counters and client failures after warm-up (and in total)."""
    steady = [s for s in samples if s.t >= warmup]
    quarter = max(1, len(steady) // 4)
    first, last = statistics.median(s.rss_mib for s in steady[:quarter]), statistics.median(
        s.rss_mib for s in steady[-quarter:])
    result = {
        "rss_after_warmup_mib": first, "rss_at_end_mib": last, "rss_growth_mib": round(last - first, 2),
        "rss_peak_mib": max(s.rss_mib for s in samples),
        "service_error_growth": steady[-1].service_errors - steady[0].service_errors,
        "client_failures": samples[-1].failures,
    }
    result["passed"] = (result["rss_growth_mib"] <= max_growth_mib and result["service_error_growth"] == 0
                        and result["client_failures"] == 0)
    return result


def write_report(out: str, meta: dict, tally: Tally, samples: list[Sample], result: dict) -> str:
    os.makedirs(out, exist_ok=True)
    data = {"meta": meta, "verdict": result, "traffic": {"sent": tally.sent, "by_kind": tally.by_kind,
            "planted": tally.leak.planted, "leaked": tally.leak.leaked, "altered": tally.leak.altered,
            "notes": tally.notes}, "samples": [asdict(s) for s in samples]}
    with open(os.path.join(out, "soak.json"), "w") as handle:
        json.dump(data, handle, indent=1)
    verdict_word = "PASSED" if result["passed"] else "FAILED"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.by_kind.items()))
    memory = (f"- service RSS: {result['rss_after_warmup_mib']:.1f} MiB after {meta['warmup_s']} s warm-up, "
              f"{result['rss_at_end_mib']:.1f} MiB at the end (growth {result['rss_growth_mib']:+.2f} MiB, "
              f"limit {meta['max_growth_mib']}), peak {result['rss_peak_mib']:.1f} MiB")
    errors = (f"- service error counters grew by {result['service_error_growth']:g}; client failures "
              f"{result['client_failures']}")
    lines = [f"# Soak: {meta['minutes']} min at {meta['rps']} req/s ({verdict_word})", "",
             f"- requests: {tally.sent}, {tally.sent / (meta['minutes'] * 60):.1f} req/s achieved ({kinds})",
             f"- planted secrets: {tally.leak.planted}, leaked {tally.leak.leaked}, altered {tally.leak.altered}",
             memory, errors, "", "| t (s) | RSS (MiB) | requests | service errors |", "|---|---|---|---|"]
    lines += [f"| {s.t:g} | {s.rss_mib:.1f} | {s.requests} | {s.service_errors:g} |" for s in samples]
    lines += ["", *[f"- {note}" for note in tally.notes]]
    path = os.path.join(out, "soak.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def run_soak(minutes: float, rps: float = 20, conns: int = 4, out: str | None = None,
             max_growth_mib: float = 8.0, every: float | None = None) -> dict:
    seconds = minutes * 60
    warmup = min(60.0, seconds / 5)
    every = every or max(2.0, seconds / 60)
    out = out or tempfile.mkdtemp(prefix="soak-")
    os.makedirs(out, exist_ok=True)
    lab = Lab(out, envoy_concurrency=1)
    try:
        upstream = lab.upstream()
        target = lab.service_stack("soak", "default policy", policies.default_policy().text, upstream)
        lab.wait()
        tally, samples = Tally(), []

        async def both() -> None:
            await asyncio.gather(traffic(target, rps, conns, seconds, tally),
                                 sampler(target, every, seconds, tally, samples))

        asyncio.run(both())
        result = verdict(samples, warmup, max_growth_mib)
        result["service_log_errors"] = lab.errors_in_logs()
        result["passed"] = result["passed"] and not any(result["service_log_errors"].values())
    finally:
        lab.stop()
    meta = {"minutes": minutes, "rps": rps, "conns": conns, "warmup_s": warmup, "every_s": every,
            "max_growth_mib": max_growth_mib}
    result["report"] = write_report(out, meta, tally, samples, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rps", type=float, default=20.0, help="requests per second, paced (default %(default)s)")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--max-growth-mib", type=float, default=8.0, help="allowed RSS growth after warm-up")
    p.add_argument("--out", help="directory for soak.md / soak.json (default: a temporary directory)")
    args = p.parse_args(argv)
    result = run_soak(args.minutes, args.rps, args.conns, args.out, args.max_growth_mib)
    with open(result["report"]) as handle:
        print(handle.read())
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

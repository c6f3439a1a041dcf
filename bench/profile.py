"""`python -m bench --profile`: where the service's time goes under load, sampled with py-spy.

Starts the upstream and one Envoy + service stack (`--profile-policy`, default full), drives it with the
non-streamed 1 KB chat load (c=16) and then with paced SSE streams (c=16), each for --duration seconds
(default 20) while `py-spy record --nonblocking --format raw` samples the service's Python threads, and
prints the top functions by own time and by inclusive time, plus a breakdown by component. Raw collapsed
stacks (and a flame graph SVG) are kept in bench/results/.

Needs py-spy (`pip install py-spy`); the samples cover Python frames only (time inside C extensions such as
gRPC's core, RE2 or orjson is charged to the Python frame that called them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter

from bench import client, payloads, run
from bench.policies import all_policies
from bench.stacks import Lab

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = path.split("/", 1)[-1]
    return path


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        m = _FRAME.match(frame)
        out.append((m["func"], _short(m["file"])) if m else (frame, ""))
    return out


def component(func: str, path: str) -> str:
    if path.startswith("extproc/detectors/"):
        return "detector " + path.rsplit("/", 1)[1].removesuffix(".py")
    if path.startswith("extproc/"):
        return "extproc " + path.removeprefix("extproc/").removesuffix(".py")
    for prefix, name in (("grpc", "grpc (Python/Cython layer)"), ("asyncio", "asyncio event loop"),
                         ("structlog", "structlog (audit/log lines)"), ("logging", "logging"),
                         ("prometheus_client", "prometheus_client (metrics)"), ("re2", "re2 wrapper"),
                         ("google/protobuf", "protobuf"), ("selectors", "asyncio event loop")):
        if path.startswith(prefix):
            return name
    return path or func


INCLUSIVE_MARKERS = {
    "Session.handle (all policy work per message)": ("handle", "extproc/session.py"),
    "audit.emit (audit record + its metrics, per exchange)": ("emit", "extproc/audit.py"),
    "scan_segments (detectors on whole bodies)": ("scan_segments", "extproc/policy/engine.py"),
    "StreamScanner.push/finish (streamed bodies)": ("push|finish", "extproc/stream_scan.py"),
    "  of which detector hold() calls": ("hold", "extproc/detectors/"),
    "  of which scan_text (detector find calls)": ("scan_text", "extproc/policy/engine.py"),
    "prometheus_client (labels/observe/inc)": ("labels|observe|inc|dec|_metric_init", "prometheus_client/"),
    "envoy reply builders (extproc/envoy.py)": (r"\w+", "extproc/envoy.py"),
}
# Frames every sample has (interpreter start-up, event loop plumbing): left out of the inclusive table.
_ROOT_FILES = ("<frozen runpy>", "asyncio/runners.py", "asyncio/base_events.py", "extproc/cli.py",
               "extproc/__main__.py", "asyncio/events.py")


# Leaves of threads waiting for work. Without --native py-spy drops idle threads itself; with --native it
# cannot tell, so these samples are left out.
_IDLE_LEAVES = ("epoll_wait", "poll", "select", "pthread_cond_wait", "pthread_cond_timedwait", "futex_wait",
                "__futex_abstimed_wait_common", "sem_wait", "nanosleep", "clock_nanosleep")


def analyse(raw_path: str, top: int = 20) -> str:
    samples: list[tuple[list[tuple[str, str]], int]] = []
    idle = 0
    with open(raw_path) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = _frames(stack)
            if frames[-1][0] in _IDLE_LEAVES or frames[-1][0].startswith("0x") and any(
                    f in _IDLE_LEAVES for f, _ in frames[-3:]):
                idle += int(count)
                continue
            samples.append((frames, int(count)))
    total = sum(n for _, n in samples) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    comp: Counter[str] = Counter()
    marks: Counter[str] = Counter()
    for frames, n in samples:
        func, path = frames[-1]
        own[f"{func} ({path})"] += n
        comp[component(func, path)] += n
        for name in {f"{f} ({p})" for f, p in frames if p not in _ROOT_FILES}:
            incl[name] += n
        for label, (funcs, path_part) in INCLUSIVE_MARKERS.items():
            if any(p.startswith(path_part) and re.fullmatch(rf"(?:\w+\.)*(?:{funcs})", f) for f, p in frames):
                marks[label] += n
        detectors_seen = {p.rsplit("/", 1)[1].removesuffix(".py") for _, p in frames
                          if p.startswith("extproc/detectors/") and not p.endswith(("/base.py", "/hold.py",
                                                                                    "/patterns.py"))}
        for name in detectors_seen:
            marks[f"detector {name} (find + hold, inclusive)"] += n
    lines = [(f"{total} samples ({idle} idle-wait samples left out). Without --profile-native only Python frames"
             " are seen: own time in `Handle._run` / `Thread.run` is then gRPC's Cython/C core and syscalls."), "",
             "| by component (own time) | share |", "|---|---|"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in comp.most_common(top)]
    lines += ["", "| inclusive | share |", "|---|---|"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in marks.most_common()]
    lines += ["", "| function (own time) | share |", "|---|---|"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in own.most_common(top)]
    lines += ["", "| function (inclusive) | share |", "|---|---|"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in incl.most_common(top)]
    return "\n".join(lines)


def _record(pid: int, seconds: float, base: str, native: bool) -> list[subprocess.Popen]:
    # --native needs blocking sampling (py-spy pauses the process for each sample: slower service).
    common = [_py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
              "--native" if native else "--nonblocking"]
    spies = [subprocess.Popen([*common, "--format", "raw", "-o", base + ".txt"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    if not native:  # two blocking samplers on one process interfere
        spies.append(subprocess.Popen([*common, "--format", "flamegraph", "-o", base + ".svg"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def main(args, command: str) -> int:  # type: ignore[no-untyped-def]
    duration = args.duration or 20.0
    policy_name = args.profile_policy
    plan = run.Plan.make(False, {"chat"}, duration, 1, args.client)
    lab = Lab(plan.workdir, args.envoy_concurrency)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    how = "--native (blocking: the service runs slower while sampled)" if args.profile_native else "--nonblocking"
    sections = [f"# Service profile ({policy_name} policy)", "", (f"`{command}` — {stamp} UTC, py-spy {how} at"
                " 200 Hz, load generator and Envoy on the same 2 cores (noisy)"), ""]
    try:
        up = lab.upstream()
        lab.wait()
        target = lab.service_stack(policy_name, policy_name, all_policies()[policy_name].text, up)
        lab.wait()
        run._verify(target)
        pid = target.service_pids[0]
        for load in ("chat", "stream"):
            base = os.path.join(args.out, f"profile-{policy_name}-{load}-{stamp}")
            spies = _record(pid, duration, base, args.profile_native)
            if load == "chat":
                desc = "non-streamed 1 KB chat, c=16"
                res = run.load_once(plan, target, 1024, 16)
                summary = f"{res['rps']:.0f} req/s, service CPU {res['service_cpu_us']:.0f} µs/req"
            else:
                desc = "SSE streams, 200 events 2 ms apart, c=16"
                summary = _streams_for(target, duration)
            for spy in spies:
                spy.wait(timeout=duration + 60)
            sections += [f"## {desc} ({summary})", "", analyse(base + ".txt"), "",
                         f"raw stacks: {base}.txt" + ("" if args.profile_native else f", flame graph: {base}.svg"),
                         ""]
    finally:
        lab.stop()
        shutil.rmtree(plan.workdir, ignore_errors=True)
    text = "\n".join(sections)
    path = os.path.join(args.out, f"profile-{policy_name}-{stamp}.md")
    with open(path, "w") as handle:
        handle.write(text)
    print(text)
    print(f"\nwritten: {path}")
    return 0


def _streams_for(target, seconds: float) -> str:  # type: ignore[no-untyped-def]
    headers = {"x-bench-kind": "sse", "x-bench-events": str(payloads.STREAM_EVENTS), "x-bench-gap-us": "2000"}
    raw = client.raw_request("127.0.0.1", target.port, run.PATH, headers, payloads.chat_request(1024, stream=True))
    cpu0, msgs0 = target.service_cpu(), target.messages()
    until = time.perf_counter() + seconds
    replies = asyncio.run(client.run_streams("127.0.0.1", target.port, lambda i: raw, 16, 1 << 30, until=until))
    cpu, msgs = target.service_cpu() - cpu0, target.messages() - msgs0
    return f"{len(replies)} streams, {msgs / len(replies):.0f} msgs/stream, {cpu / max(msgs, 1) * 1e6:.0f} µs CPU/msg"


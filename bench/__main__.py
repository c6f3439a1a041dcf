"""`python -m bench`: does the gateway stay out of the way? Same run, loopback, 2 cores.

Targets: the scripted upstream direct, plain Envoy -> upstream (baseline), and Envoy + the ext_proc service
with no rules, the default policy and the full policy (every registered detector, both directions).

    python -m bench                     # full run (~15 min): chat, stream, leak, scaling
    python -m bench --quick             # smoke run (seconds): one cell per scenario, asyncio client only
    python -m bench --only leak         # one scenario (chat | stream | leak | scaling), comma-separated
    python -m bench --profile           # py-spy profile of the service under load (see bench/profile.py)

Results: a Markdown table and JSON in bench/results/ (or --out), also printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from bench import report, run
from bench.policies import all_policies
from bench.stacks import ROOT, Lab


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: one cell per scenario, tiny durations")
    p.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(run.SCENARIOS)}")
    p.add_argument("--duration", type=float, help="seconds per load cell (default 5; quick 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds, medians reported (default 3; quick 1)")
    p.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto",
                   help="load generator for non-streamed cells (auto: wrk if installed, asyncio in --quick)")
    p.add_argument("--envoy-concurrency", type=int, default=2, help="Envoy worker threads (default 2)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="directory for .md / .json")
    p.add_argument("--profile", action="store_true", help="profile the service with py-spy instead")
    p.add_argument("--profile-policy", choices=["none", "default", "full"], default="full",
                   help="policy of the profiled stack (default full)")
    p.add_argument("--profile-native", action="store_true",
                   help="py-spy --native: include C frames (gRPC core, syscalls); blocking sampling")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = " ".join(["python -m bench", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    if args.profile:
        from bench import profile

        return profile.main(args, command)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(run.SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(run.SCENARIOS)}")
    plan = run.Plan.make(args.quick, only, args.duration, args.rounds, args.client)
    policies = all_policies()
    meta = report.meta(command, plan, policies, args.envoy_concurrency)
    lab = Lab(plan.workdir, args.envoy_concurrency)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    results: dict = {"meta": meta}
    try:
        targets = run.start(plan, lab, policies)
        log("stacks up: " + ", ".join(f"{t.name}=:{t.port}" for t in targets.values()))
        pick = lambda *names: [targets[n] for n in names if n in targets]
        if plan.wants("chat"):
            results["chat"] = run.chat(plan, pick("upstream", "baseline", "noop", "none", "default", "full"), log)
        if plan.wants("stream"):
            results["stream"] = run.stream(plan, pick("baseline", "noop", "none", "default", "full"), log)
        if plan.wants("leak"):
            results["leak"] = run.leak(plan, pick("none", "default", "full"), log)
        if plan.wants("scaling"):
            results["scaling"] = run.scaling(plan, pick("full", "full-2w"), log)
        results["service_log_errors"] = lab.errors_in_logs()
    finally:
        lab.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(plan.workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {plan.workdir}", file=sys.stderr)
    meta["finished_loadavg"] = report.loadavg()
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    results["goals"] = report.goals(results)
    markdown = report.markdown(results)
    md_path, json_path = report.write(args.out, results, markdown, quick=plan.quick)
    print(markdown)
    print(f"\nwritten: {md_path}\n         {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

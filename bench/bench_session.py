"""CPU per ext_proc message of a Session driven in-process (no gRPC, no Envoy): deterministic enough to
compare changes on a shared, loaded machine, where wall-clock end-to-end ratios are noisy.

Scenarios, for the none / default / full policies of `bench/policies.py`:
- chat 1 KB and 16 KB: request headers, request body, response headers, response body (buffered JSON);
- stream 200: request headers + body, response headers, then one message per SSE record of the benchmark
  stream (`bench.payloads.bench_stream`), the last with end_of_stream. The output is checked to equal the
  input byte for byte (clean text), so a fast path that drops or alters text fails the run.

Figures are process CPU seconds (`time.process_time`) per message, best of `--repeats` batches.

Run: .venv/bin/python -m bench.bench_session [--repeats 5] [--only stream] [--policy default]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable

from bench import payloads
from bench.policies import all_policies
from extproc import logs, pb
from extproc.policy.reload import compile_text
from extproc.session import Session

LOOP = asyncio.new_event_loop()  # runs the awaitable replies of checks (and their end-of-exchange work)
HEADERS = {":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw",
           "content-type": "application/json", "x-request-id": "bench-1"}


def _headers(pairs: dict[str, str], **kind: bool) -> pb.HttpHeaders:
    return pb.HttpHeaders(headers=pb.HeaderMap(headers=[pb.HeaderValue(key=k, raw_value=v.encode())
                                                        for k, v in pairs.items()]), **kind)


def _messages(request: bytes, content_type: str, bodies: list[bytes]) -> list[pb.ProcessingRequest]:
    msgs = [pb.ProcessingRequest(request_headers=_headers(HEADERS)),
            pb.ProcessingRequest(request_body=pb.HttpBody(body=request, end_of_stream=True)),
            pb.ProcessingRequest(response_headers=_headers({":status": "200", "content-type": content_type}))]
    msgs += [pb.ProcessingRequest(response_body=pb.HttpBody(body=b, end_of_stream=i == len(bodies) - 1))
             for i, b in enumerate(bodies)]
    return msgs


def scenarios() -> dict[str, list[pb.ProcessingRequest]]:
    return {
        "chat 1 KB": _messages(payloads.chat_request(1024), "application/json", [payloads.chat_response(1024)]),
        "chat 16 KB": _messages(payloads.chat_request(16384), "application/json",
                                [payloads.chat_response(16384)]),
        "stream 200": _messages(payloads.chat_request(1024, stream=True), "text/event-stream",
                                payloads.bench_stream(200)),
    }


def run_once(policy, messages: list[pb.ProcessingRequest]) -> bytes:  # type: ignore[no-untyped-def]
    """One exchange; returns the response body bytes the client would receive."""
    session = Session(policy)
    out = []
    for msg in messages:
        reply = session.handle(msg)
        if not isinstance(reply, pb.ProcessingResponse):
            reply = LOOP.run_until_complete(reply)
        if msg.WhichOneof("request") == "response_body":
            mutation = reply.response_body.response.body_mutation
            out.append(mutation.body if mutation.WhichOneof("mutation") == "body" else
                       b"" if mutation.clear_body else msg.response_body.body)
    work = session.finish()
    if work is not None:
        LOOP.run_until_complete(work)
    return b"".join(out)


def measure(func: Callable[[], object], number: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(number):
            func()
        best = min(best, (time.process_time() - started) / number)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="scenario name prefix: chat, stream")
    parser.add_argument("--policy", help="none, default or full")
    args = parser.parse_args()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run: the audit logger writes to it
    with contextlib.redirect_stdout(devnull):
        logs.configure()  # the audit line is rendered as in production, then discarded
    policies = {name: compile_text(p.text, name) for name, p in all_policies().items()
                if args.policy in (None, name)}
    print(f"{'scenario':<12} {'policy':<8} {'msgs':>5} {'µs/exchange':>12} {'µs/msg':>9}")
    for name, messages in scenarios().items():
        if args.only and not name.startswith(args.only):
            continue
        sent = b"".join(m.response_body.body for m in messages if m.WhichOneof("request") == "response_body")
        for pname, policy in policies.items():
            if name.startswith("stream") and run_once(policy, messages) != sent:
                raise SystemExit(f"{name} / {pname}: the clean stream was altered")
            number = 3 if name.startswith("stream") or "16" in name else 20
            seconds = measure(functools.partial(run_once, policy, messages), number, args.repeats)
            print(f"{name:<12} {pname:<8} {len(messages):>5} {seconds * 1e6:>12,.0f} "
                  f"{seconds * 1e6 / len(messages):>9,.1f}")


if __name__ == "__main__":
    main()

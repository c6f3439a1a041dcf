"""The benchmark's floor: the no-op ext_proc takes the service's phases, and the goals table reports it."""

from __future__ import annotations

import pytest

from bench import noop_service, report
from extproc import pb


def _response_headers(content_type: str) -> pb.ProcessingRequest:
    headers = pb.HeaderMap(headers=[pb.HeaderValue(key=":status", raw_value=b"200"),
                                    pb.HeaderValue(key="content-type", raw_value=content_type.encode())])
    return pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=headers))


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/Problem+JSON"])
def test_json_responses_are_switched_to_buffered_like_the_service_does(content_type):
    reply = noop_service.reply_to(_response_headers(content_type))
    assert reply.WhichOneof("response") == "response_headers"
    assert reply.mode_override.response_body_mode == pb.ProcessingMode.BUFFERED


def test_streams_keep_the_filter_mode_and_every_other_message_continues_unchanged():
    reply = noop_service.reply_to(_response_headers("text/event-stream"))
    assert not reply.HasField("mode_override")
    for kind, message in (("request_headers", pb.HttpHeaders()), ("request_body", pb.HttpBody(body=b"{}")),
                          ("response_body", pb.HttpBody(body=b"data: x\n\n"))):
        reply = noop_service.reply_to(pb.ProcessingRequest(**{kind: message}))
        assert reply.WhichOneof("response") == kind
        common = getattr(reply, kind).response
        assert not common.HasField("body_mutation") and not common.HasField("header_mutation")


def test_goals_carry_the_floor_measured_in_the_same_run():
    results = {
        "chat": [{"size": 1024, "conns": 1, "target": "full", "p50_added_ms": 4.2},
                 {"size": 1024, "conns": 1, "target": "noop", "p50_added_ms": 1.5},
                 {"size": 1024, "conns": 16, "target": "full", "rps_x": 0.05}],
        "stream": [{"gap_us": 2000, "conns": 1, "target": "default", "first_byte_added_ms": 1.9,
                    "service_cpu_us_per_msg": 420.0},
                   {"gap_us": 2000, "conns": 1, "target": "noop", "first_byte_added_ms": 1.7,
                    "service_cpu_us_per_msg": 390.0}],
    }
    goals = {g["goal"]: g for g in report.goals(results)}
    p50 = goals["added p50 <= 1.0 ms at c=1, full policy"]
    assert (p50["measured"], p50["met"], p50["floor"]) == (4.2, False, 1.5)
    assert goals[">= 0.2x baseline throughput at c=16, full policy"]["floor"] is None  # not measured
    ttfb = goals["<= 2 ms added time to first byte, default policy"]
    assert (ttfb["met"], ttfb["floor"]) == (True, 1.7)
    chunk = goals["<= 50 µs service CPU per streamed chunk, default policy"]
    assert (chunk["measured"], chunk["met"], chunk["floor"]) == (420, False, 390.0)
    table = report.markdown({"meta": _meta(), "goals": report.goals(results)})
    assert "| added p50 <= 1.0 ms at c=1, full policy | 4.2 | **no** | 1.500 |" in table


def _meta() -> dict:
    return {"command": "python -m bench", "date": "d", "git": "g", "cores": 2, "cpu": "c", "platform": "p",
            "started_loadavg": "0", "python": "3.11", "versions": {}, "detectors": [], "policies": {},
            "plan": {"rounds": 1, "load_generator": "x", "duration_s": 1, "envoy_concurrency": 2}}

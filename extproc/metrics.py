"""Prometheus metrics. Label values are rule ids, detector names, shapes and fixed words: never content."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("extproc_requests_total", "Exchanges handled, by API shape and final decision",
                   ["shape", "decision"])
RULE_HITS = Counter("extproc_rule_hits_total", "Rule matches, by rule, action and mode", ["rule", "action", "mode"])
DETECTOR_SECONDS = Histogram(
    "extproc_detector_seconds",
    "Time a detector spent on one text: a request segment, a buffered response, or a whole streamed response"
    " (summed over its chunks)", ["detector"],
    buckets=(0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
)
MESSAGE_SECONDS = Histogram(
    "extproc_message_seconds", "Time to answer one ext_proc message, by phase", ["phase"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
)
STREAMS_IN_FLIGHT = Gauge("extproc_streams_in_flight", "ext_proc gRPC streams currently open")
STREAMS_REFUSED = Counter("extproc_streams_refused_total",
                          "ext_proc streams refused with RESOURCE_EXHAUSTED because --max-streams were in flight")
RELOADS = Counter("extproc_policy_reloads_total", "Policy reload attempts, by result", ["result"])
ERRORS = Counter("extproc_errors_total", "Errors, by kind", ["kind"])
SHADOW_EXCHANGES = Counter("extproc_shadow_exchanges_total",
                           "Exchanges also evaluated by the shadow policy, by whether its decision differed",
                           ["outcome"])
SHADOW_DIFFERENCES = Counter("extproc_shadow_differences_total",
                             "Exchanges where a rule hit under one of the active and shadow policies only", ["rule"])
BUDGET_RESERVED = Counter("extproc_budget_reserved_tokens_total",
                          "Tokens reserved at admission by budget rules (prompt estimate + output cap)", ["rule"])
BUDGET_SETTLED = Counter("extproc_budget_settled_tokens_total",
                         "Tokens charged to budgets once exchanges ended (reported usage, else estimates)", ["rule"])
BUDGET_REFUSALS = Counter("extproc_budget_refusals_total", "Budget refusals (would-refusals in monitor mode), by "
                          "rule, phase (admission, too_large, stream) and mode", ["rule", "phase", "mode"])
POLICY_INFO = Gauge("extproc_policy_info", "The active policy (value 1), by content digest", ["digest"])


def cached_child(metric, **labels):  # type: ignore[no-untyped-def]
    """`metric.labels(...)` costs a lock and a dict build per call; the hot path reuses the children."""
    key = (id(metric), tuple(sorted(labels.items())))
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(**labels)
    return child


_CHILDREN: dict = {}


def serve_metrics(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


# Series that alerts divide or rate over exist from the start at 0, so `increase(...)` sees the first event
# and "no denials yet" reads 0 rather than "no data".
RELOAD_RESULTS = ("ok", "invalid", "unreadable")
ERROR_KINDS = ("internal", "detector", "check", "response_not_json", "digest_key_unreadable", "model_digest_source")
ALERT_DECISIONS = ("deny", "error", "reject")


def touch_alert_series(shapes: list[str]) -> None:
    for result in RELOAD_RESULTS:
        RELOADS.labels(result=result)
    for kind in ERROR_KINDS:
        ERRORS.labels(kind=kind)
    for shape in [*shapes, "none"]:
        for decision in ALERT_DECISIONS:
            REQUESTS.labels(shape=shape, decision=decision)


def touch_rule_series(rules: list[tuple[str, str, str]]) -> None:
    """Each rule's hit counter at 0 once the rule is active: (id, action, mode) per rule."""
    for rule, action, mode in rules:
        RULE_HITS.labels(rule=rule, action=action, mode=mode)


def set_active_policy(digest: str) -> None:
    POLICY_INFO.clear()
    POLICY_INFO.labels(digest=digest[:12]).set(1)

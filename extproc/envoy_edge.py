"""What every shipped Envoy config sets on its HTTP connection manager, in one place.

Three concerns, each a pure builder so `envoy_config.py` (and the tests that check the hand-written
bootstraps) can merge them in:

- canonical paths (`path_settings`): the service and the router read the same normalised path; a path with
  an escaped slash (`%2F`, `%5C`) is refused, since upstreams disagree on what it means;
- limits (`limit_settings`): receiving a request is bounded in time and size, so slow or huge clients are
  Envoy's problem, while a generation (the response) stays unbounded;
- replies (`reply_settings`): Envoy's own local replies (413, 503, 504, ...) come in the API's error format
  with `x-llm-policy: error`, and every response carries `x-request-id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from extproc.shapes import for_path

# The service's immediate replies carry response code details `llm_policy_<code>` and are already in the
# API's format, so the mappers below leave them alone.
SERVICE_DETAILS_PREFIX = "llm_policy_"
POLICY_HEADER = "x-llm-policy"
# Set by the mappers with x-llm-policy, copied into x-llm-policy by `policy_header_filter` after ext_proc has run,
# then dropped: ext_proc also answers the response phase of a local reply and would overwrite it with `allow`.
# (A reply made before the filter chain exists, e.g. a header timeout, skips both filters and keeps the marker.)
LOCAL_REPLY_MARKER = "x-llm-local-reply"
# statuses -> (code, message) of Envoy's local replies (the first status picks the error type); any other
# status falls back to FALLBACK. 5 per API family: kgateway accepts at most 16 mappers.
LOCAL_REPLIES: dict[tuple[int, ...], tuple[str, str]] = {
    (400, 431): ("invalid_request", "the gateway refused the request: malformed path, or headers malformed or too large"),
    (413,): ("payload_too_large", "the request body is larger than the gateway accepts"),
    (408, 504): ("gateway_timeout", "timed out: the request was not received in time, or no answer came in time"),
    (503,): ("upstream_unavailable", "the policy service or the model server is unavailable"),
}
FALLBACK = ("gateway_error", "the gateway could not complete the request")
# (path prefixes, a path the shape registry resolves to the family's error format); the last one is the default
FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("/v1/messages", "/anthropic/v1/messages"), "/v1/messages"),
    (("/api/",), "/api/chat"),
    ((), "/v1/chat/completions"),
)


@dataclass(frozen=True)
class EdgeLimits:
    """Envoy-side bounds on what a client may make Envoy hold (docs/deploy.md, "Edge settings")."""

    request_headers_timeout: str = "10s"  # first byte to last header byte
    request_timeout: str = "120s"  # the whole request received; stops once the response starts
    stream_idle_timeout: str = "600s"  # nothing moving either way (a reasoning model may think for minutes)
    connection_idle_timeout: str = "3600s"
    max_request_headers_kb: int = 60
    max_headers_count: int = 100
    max_concurrent_streams: int = 100  # per HTTP/2 connection
    max_requests_per_connection: int = 10000
    max_downstream_connections: int = 50000  # all listeners together


def bootstrap_settings(limits: EdgeLimits) -> dict[str, Any]:
    """Bootstrap-level: a ceiling on open downstream connections, so idle sockets cannot exhaust Envoy."""
    return {"overload_manager": {"resource_monitors": [{
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
                     "DownstreamConnectionsConfig",
            "max_active_downstream_connections": limits.max_downstream_connections,
        },
    }]}}


def path_settings() -> dict[str, Any]:
    return {"normalize_path": True, "merge_slashes": True, "path_with_escaped_slashes_action": "REJECT_REQUEST"}


def limit_settings(limits: EdgeLimits) -> dict[str, Any]:
    return {
        "request_headers_timeout": limits.request_headers_timeout,
        "request_timeout": limits.request_timeout,
        "stream_idle_timeout": limits.stream_idle_timeout,
        "max_request_headers_kb": limits.max_request_headers_kb,
        "common_http_protocol_options": {
            "idle_timeout": limits.connection_idle_timeout,
            "max_headers_count": limits.max_headers_count,
            "max_requests_per_connection": limits.max_requests_per_connection,
            # `x_tenant` and `x-tenant` are one header to some upstreams (CGI/WSGI) and two to the policy
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": limits.max_concurrent_streams,
            "initial_stream_window_size": 65536,  # Envoy's edge recommendation: bounded per-stream buffering
            "initial_connection_window_size": 1048576,
        },
    }


def reply_settings() -> dict[str, Any]:
    return {
        "generate_request_id": True,
        "always_set_request_id_in_response": True,
        "local_reply_config": {"mappers": local_reply_mappers()},
    }


def hcm_settings(limits: EdgeLimits | None = None) -> dict[str, Any]:
    """Every HCM key this module owns, to merge into a connection manager config."""
    return {**path_settings(), **limit_settings(limits or EdgeLimits()), **reply_settings()}


def local_reply_mappers() -> list[dict[str, Any]]:
    """One mapper per (API family, status group), then a fallback per family; first match wins."""
    mappers = []
    for prefixes, example_path in FAMILIES:
        for statuses, (code, message) in LOCAL_REPLIES.items():
            mappers.append(_mapper(prefixes, example_path, statuses, code, message))
        mappers.append(_mapper(prefixes, example_path, None, *FALLBACK))
    return mappers


def _mapper(prefixes: tuple[str, ...], example_path: str, statuses: tuple[int, ...] | None, code: str,
            message: str) -> dict[str, Any]:
    shape = for_path(example_path)
    if shape is None:
        raise LookupError(f"no shape serves {example_path}")
    body = orjson.loads(shape.error_body(statuses[0] if statuses else 500, code, message))
    return {
        "filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": mapper_expression(prefixes, statuses),
        }}},
        "headers_to_add": [_set_header(name, f"error; code={code}") for name in (POLICY_HEADER, LOCAL_REPLY_MARKER)],
        "body_format_override": {"json_format": body},
    }


def mapper_expression(prefixes: tuple[str, ...], statuses: tuple[int, ...] | None) -> str:
    """CEL over the local reply: not one of the service's own replies, these statuses, this API family."""
    terms = [f"!response.code_details.startsWith('{SERVICE_DETAILS_PREFIX}')",
             f"response.code in {list(statuses)}" if statuses else "response.code >= 400"]
    if prefixes:
        terms.append("(" + " || ".join(f"request.url_path.startsWith('{p}')" for p in prefixes) + ")")
    return " && ".join(terms)


def policy_header_filter() -> dict[str, Any]:
    """An HTTP filter to list *before* ext_proc (so it sees responses after ext_proc): a local reply keeps
    the `x-llm-policy` its mapper chose; every other response is left as it is."""
    mutations = [{"append": _set_header(POLICY_HEADER, f"%RESP({LOCAL_REPLY_MARKER})%")},
                 {"remove": LOCAL_REPLY_MARKER}]
    return {"name": "llm_local_reply_policy_header", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"response_mutations": mutations},
    }}


def _set_header(name: str, value: str) -> dict[str, Any]:
    # an empty value (the marker is absent) is skipped: keep_empty_value defaults to false
    return {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def kgateway_http_settings(limits: EdgeLimits | None = None) -> dict[str, Any]:
    """The subset of the above kgateway's ListenerPolicy `httpSettings` can express (see docs/deploy.md)."""
    limits = limits or EdgeLimits()
    return {
        "maxRequestHeadersKb": limits.max_request_headers_kb,
        "maxHeadersCount": limits.max_headers_count,
        "maxRequestsPerConnection": limits.max_requests_per_connection,
        "idleTimeout": limits.connection_idle_timeout,
        "streamIdleTimeout": limits.stream_idle_timeout,
        "http2ProtocolOptions": {"maxConcurrentStreams": limits.max_concurrent_streams,
                                 "initialStreamWindowSize": 65536, "initialConnectionWindowSize": 1048576},
        "generateRequestId": True,
        "localReplies": {"mappers": [_kgateway_mapper(m) for m in local_reply_mappers()]},
    }


def _kgateway_mapper(mapper: dict[str, Any]) -> dict[str, Any]:
    [policy, _marker] = mapper["headers_to_add"]
    return {
        "filter": {"celFilter": {"match": mapper["filter"]["extension_filter"]["typed_config"]["expression"]}},
        # no filter after ext_proc here: the header is set directly (see docs/deploy.md for the caveat)
        "headers": {"set": [{"name": POLICY_HEADER, "value": policy["header"]["value"]}]},
        "bodyFormatOverride": {"json": mapper["body_format_override"]["json_format"]},
    }

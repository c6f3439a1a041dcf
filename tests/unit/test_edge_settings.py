"""Every shipped Envoy config has the edge settings of extproc/envoy_edge.py: canonical paths, bounded request
reception, size and stream limits, request ids, local replies in the API's format; the Kubernetes overlays
have what their gateway's CRDs can express. Behaviour through a real Envoy: tests/integration/test_envoy_edge.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.envoy_config import StackPorts, render
from extproc.envoy_edge import (
    FAMILIES,
    LOCAL_REPLY_MARKER,
    POLICY_HEADER,
    EdgeLimits,
    hcm_settings,
    kgateway_http_settings,
    local_reply_mappers,
    policy_header_filter,
)

REPO = Path(__file__).resolve().parents[2]
EXT_PROC = "envoy.filters.http.ext_proc"
HCM = "envoy.filters.network.http_connection_manager"
HAND_WRITTEN = [*sorted((REPO / "envoy").glob("**/*.yaml")), REPO / "deploy/overlays/envoy/envoy.yaml"]
# `extproc up` and `extproc envoy-config` render the bootstrap; the committed envoy/envoy.yaml is one rendering
RENDERED = {"rendered:up-workers": StackPorts(extproc_ports=[50051, 50052], listen_port=11000),
            "rendered:tls-upstream": StackPorts(upstream="https://api.example.com")}
SHIPPED = {str(p.relative_to(REPO)): p for p in HAND_WRITTEN} | RENDERED


def _load_sync() -> Any:
    spec = importlib.util.spec_from_file_location("sync_edge", REPO / "envoy/sync_edge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bootstrap(source: Path | StackPorts) -> dict[str, Any]:
    return yaml.safe_load(source.read_text()) if isinstance(source, Path) else render(source)


def _hcms(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["typed_config"] for listener in doc["static_resources"]["listeners"]
            for chain in listener["filter_chains"] for f in chain["filters"] if f["name"] == HCM]


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


@pytest.fixture(params=list(SHIPPED), ids=list(SHIPPED))
def shipped(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _bootstrap(SHIPPED[request.param])


def test_paths_are_canonical_before_anyone_matches_them(shipped: dict[str, Any]) -> None:
    for hcm in _hcms(shipped):
        assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
        assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"


def test_receiving_a_request_is_bounded_but_a_generation_is_not(shipped: dict[str, Any]) -> None:
    for hcm in _hcms(shipped):
        assert 0 < _seconds(hcm["request_headers_timeout"]) <= _seconds(hcm["request_timeout"]) <= 300
        assert _seconds(hcm["stream_idle_timeout"]) >= 300  # a reasoning model may think for minutes
        routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"] if "route" in r]
        for route in routes:
            if route["route"]["cluster"] != "envoy_admin":
                assert route["route"]["timeout"] == "0s"  # the whole exchange stays unbounded


def test_header_stream_and_connection_limits(shipped: dict[str, Any]) -> None:
    for hcm in _hcms(shipped):
        assert 1 <= hcm["max_request_headers_kb"] <= 96
        common = hcm["common_http_protocol_options"]
        assert common["headers_with_underscores_action"] == "REJECT_REQUEST"
        assert common["max_headers_count"] <= 100 and common["max_requests_per_connection"] > 0
        assert hcm["http2_protocol_options"]["max_concurrent_streams"] <= 100
    for listener in shipped["static_resources"]["listeners"]:
        assert listener["per_connection_buffer_limit_bytes"] == 4 * 1024 * 1024  # the body limit (413)
    [monitor] = shipped["overload_manager"]["resource_monitors"]
    assert monitor["typed_config"]["max_active_downstream_connections"] > 0


def test_every_response_carries_a_request_id_and_local_replies_are_mapped(shipped: dict[str, Any]) -> None:
    for hcm in _hcms(shipped):
        assert hcm["generate_request_id"] is True and hcm["always_set_request_id_in_response"] is True
        assert hcm["local_reply_config"] == {"mappers": local_reply_mappers()}
        names = [f["name"] for f in hcm["http_filters"]]
        assert names.index(policy_header_filter()["name"]) < names.index(EXT_PROC)  # runs after it on responses
        assert hcm["http_filters"][names.index(policy_header_filter()["name"])] == policy_header_filter()


def test_access_logs_never_hold_the_query_string(shipped: dict[str, Any]) -> None:
    for hcm in _hcms(shipped):
        for log in hcm["access_log"]:
            text = yaml.safe_dump(log)
            assert not re.search(r"%REQ\([^)]*PATH[^)]*\)%|%PATH\(WQ", text), text
            assert "%PATH(NQ)%" in text


def test_hand_written_bootstraps_hold_the_current_generated_blocks() -> None:
    sync = _load_sync()
    for path in HAND_WRITTEN:
        if path != REPO / "envoy/envoy.yaml":
            assert sync.sync_bootstrap(path.read_text()) == path.read_text(), f"run envoy/sync_edge.py ({path})"
    kgateway = REPO / "deploy/overlays/kgateway/listenerpolicy.yaml"
    assert sync.sync_kgateway(kgateway.read_text()) == kgateway.read_text(), "run envoy/sync_edge.py"


def test_a_stale_block_is_noticed() -> None:
    sync = _load_sync()
    text = (REPO / "envoy/examples/ollama.yaml").read_text().replace("request_timeout: 120s", "request_timeout: 0s")
    assert sync.sync_bootstrap(text) != text


# ---- the local-reply mappers themselves ---------------------------------------------------------------------
def _bodies_by_family() -> dict[str, list[dict[str, Any]]]:
    mappers = local_reply_mappers()
    per_family = len(mappers) // len(FAMILIES)
    return {example: [m["body_format_override"]["json_format"] for m in mappers[i * per_family:(i + 1) * per_family]]
            for i, (_, example) in enumerate(FAMILIES)}


def test_each_api_family_gets_its_own_error_format() -> None:
    bodies = _bodies_by_family()
    for body in bodies["/v1/messages"]:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    for body in bodies["/api/chat"]:
        assert set(body) == {"error"} and isinstance(body["error"], str)
    for body in bodies["/v1/chat/completions"]:
        assert set(body["error"]) == {"message", "type", "code"}
    assert {b["error"]["type"] for b in bodies["/v1/messages"]} >= {"request_too_large", "invalid_request_error"}


def test_mappers_leave_the_services_own_replies_alone_and_never_say_allow() -> None:
    mappers = local_reply_mappers()
    for mapper in mappers:
        expression = mapper["filter"]["extension_filter"]["typed_config"]["expression"]
        assert expression.startswith("!response.code_details.startsWith('llm_policy_') && ")
        policy, marker = mapper["headers_to_add"]
        assert (policy["header"]["key"], marker["header"]["key"]) == (POLICY_HEADER, LOCAL_REPLY_MARKER)
        assert policy["header"]["value"] == marker["header"]["value"]
        assert policy["header"]["value"].startswith("error; code=")
    # a family's catch-all comes after its specific statuses; the default family (no path term) comes last
    expressions = [m["filter"]["extension_filter"]["typed_config"]["expression"] for m in mappers]
    assert "url_path" not in expressions[-1] and expressions[-1].endswith("response.code >= 400")
    assert all("url_path" in e for e in expressions[: -len(mappers) // len(FAMILIES)])


def test_policy_header_filter_copies_the_marker_then_drops_it() -> None:
    mutations = policy_header_filter()["typed_config"]["mutations"]["response_mutations"]
    assert mutations[0]["append"]["header"] == {"key": POLICY_HEADER, "value": f"%RESP({LOCAL_REPLY_MARKER})%"}
    assert not mutations[0].get("keep_empty_value")  # absent marker: the header is left as ext_proc set it
    assert mutations[1] == {"remove": LOCAL_REPLY_MARKER}


def test_limits_follow_edge_limits() -> None:
    settings = hcm_settings(EdgeLimits(request_timeout="3s", max_request_headers_kb=16))
    assert settings["request_timeout"] == "3s" and settings["max_request_headers_kb"] == 16
    assert render(StackPorts(edge=EdgeLimits(request_timeout="3s")))["static_resources"]["listeners"][0][
        "filter_chains"][0]["filters"][0]["typed_config"]["request_timeout"] == "3s"


# ---- Kubernetes overlays ---------------------------------------------------------------------------------------
def _objects(path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / path).read_text()) if doc]


def test_kgateway_listener_policy_sets_what_kgateway_can_express() -> None:
    [policy] = _objects("deploy/overlays/kgateway/listenerpolicy.yaml")
    settings = policy["spec"]["default"]["httpSettings"]
    assert settings == kgateway_http_settings()
    for mapper in settings["localReplies"]["mappers"]:
        [header] = mapper["headers"]["set"]
        assert header["name"] == POLICY_HEADER and header["value"].startswith("error; code=")


def test_envoy_gateway_client_traffic_policy() -> None:
    [policy] = _objects("deploy/overlays/envoy-gateway/clienttrafficpolicy.yaml")
    spec = policy["spec"]
    assert spec["path"] == {"escapedSlashesAction": "RejectRequest", "disableMergeSlashes": False}
    assert spec["headers"]["withUnderscoresAction"] == "RejectRequest"
    assert spec["timeout"]["http"]["requestReceivedTimeout"] == EdgeLimits().request_timeout
    assert spec["timeout"]["http"]["streamIdleTimeout"] == EdgeLimits().stream_idle_timeout
    assert spec["connection"]["bufferLimit"] == "4Mi"  # Envoy Gateway's default (32 KiB) refuses real prompts
    assert spec["http2"]["maxConcurrentStreams"] == EdgeLimits().max_concurrent_streams
    [gateway] = _objects("deploy/overlays/envoy-gateway/gateway.yaml")
    assert spec["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": gateway["metadata"]["name"]}]
    kustomization = yaml.safe_load((REPO / "deploy/overlays/envoy-gateway/kustomization.yaml").read_text())
    assert "clienttrafficpolicy.yaml" in kustomization["resources"]

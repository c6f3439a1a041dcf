"""The shipped Envoy bootstrap is what `extproc envoy-config` renders, and real Envoy accepts it."""

import os
import subprocess

import yaml

from extproc.envoy_config import StackPorts, render, render_yaml
from extproc.stack import envoy_binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_committed_bootstrap_equals_the_rendered_default():
    with open(os.path.join(ROOT, "envoy", "envoy.yaml")) as handle:
        assert handle.read() == render_yaml(StackPorts())


def test_rendered_bootstraps_pass_envoy_validate(tmp_path):
    for name, ports in {
        "default": StackPorts(),
        "workers": StackPorts(extproc_ports=[50051, 50052]),
        "tls-upstream": StackPorts(upstream="https://api.example.com"),
    }.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(render_yaml(ports))
        result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout + result.stderr


def test_ext_proc_filter_is_configured_for_llm_traffic():
    config = render(StackPorts())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [ext_proc] = [f["typed_config"] for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc"]
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["allow_mode_override"] is True
    assert ext_proc["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert ext_proc["processing_mode"]["response_body_mode"] == "STREAMED"
    assert float(ext_proc["message_timeout"].rstrip("s")) >= 1 and ext_proc["max_message_timeout"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[-1]["route"]["timeout"] == "0s"


def test_upstream_url_becomes_the_model_cluster():
    clusters = {c["name"]: c for c in render(StackPorts(upstream="https://models.internal:8443"))
                ["static_resources"]["clusters"]}
    endpoint = clusters["model"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "models.internal", "port_value": 8443}
    assert clusters["model"]["transport_socket"]["typed_config"]["sni"] == "models.internal"
    assert yaml.safe_load(render_yaml(StackPorts()))  # parses back

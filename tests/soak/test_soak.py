"""Opt-in soak (`pytest -m soak tests/soak`; EXTPROC_SOAK_MINUTES, default 5): steady mixed traffic through
real Envoy + the service (bench.soak); memory flat after warm-up, no error growth, no leaks."""

import os

import pytest

from bench.soak import run_soak

pytestmark = [pytest.mark.soak, pytest.mark.integration]


@pytest.mark.timeout(0)
def test_soak_memory_flat_and_no_errors(tmp_path):
    minutes = float(os.environ.get("EXTPROC_SOAK_MINUTES", "5"))
    result = run_soak(minutes, out=os.environ.get("EXTPROC_SOAK_OUT") or str(tmp_path))
    with open(result["report"]) as handle:
        print(handle.read())
    assert result["client_failures"] == 0
    assert result["service_error_growth"] == 0
    assert result["rss_growth_mib"] <= 8.0
    assert not any(result["service_log_errors"].values())
    assert result["passed"]

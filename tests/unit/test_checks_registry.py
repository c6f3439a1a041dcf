"""Every registered check is reachable from the policy schema, has tests and declares its OWASP numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc import checks, detectors
from extproc.policy.load import PolicyError, load_policy_text
from extproc.policy.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
CHECKS = sorted(checks.registry())


def _test_files() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))


@pytest.mark.parametrize("name", CHECKS)
def test_check_is_in_the_schema_tested_and_numbered(name):
    assert f"check:{name}" in str(json_schema()) or f"Rule_check_{name}" in str(json_schema())
    assert f'check: {name}' in _test_files() or f'"check": "{name}"' in _test_files()
    owasp = checks.get(name).owasp
    assert any(n.endswith(":2025") for n in owasp) and any(n.endswith(":2026") for n in owasp)


@pytest.mark.parametrize("name", sorted(detectors.registry()))
def test_detector_declares_its_owasp_numbers(name):
    if name == "regex":
        pytest.skip("a user pattern can be about anything")
    owasp = detectors.get(name).owasp
    assert any(n.endswith(":2025") for n in owasp) and any(n.endswith(":2026") for n in owasp)


def test_a_rule_naming_neither_a_detector_nor_a_check_is_refused_with_the_known_names():
    with pytest.raises(PolicyError) as err:
        load_policy_text("version: 1\nrules:\n  - id: x\n    detector: no_such_thing\n")
    assert "no_such_thing" in str(err.value) or "detectors:" in str(err.value)
    assert "secrets" in str(err.value)

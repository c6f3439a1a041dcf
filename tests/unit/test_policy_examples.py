"""Every shipped example policy validates and passes its own `policy test` cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.policy_cases import run_cases

EXAMPLES = Path(__file__).resolve().parents[2] / "extproc" / "policies" / "examples"
POLICIES = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.endswith(".tests.yaml"))


@pytest.mark.parametrize("path", POLICIES, ids=[p.stem for p in POLICIES])
def test_example_policy_passes_its_cases(path: Path, capsys):
    cases = path.with_name(path.stem + ".tests.yaml")
    assert cases.exists(), f"{path.name} ships without {cases.name}"
    status = run_cases(str(path), str(cases))
    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 failed" in out


def test_every_example_has_a_policy():
    assert all(p.with_name(p.name.replace(".tests.yaml", ".yaml")).exists() for p in EXAMPLES.glob("*.tests.yaml"))


def test_examples_are_shipped():
    assert {p.stem for p in POLICIES} >= {"models", "tools", "budgets", "context_leak", "unsafe_output", "limits"}

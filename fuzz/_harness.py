"""Shared start-up for the atheris harnesses. Each harness imports extproc inside
`atheris.instrument_imports(include=["extproc"])` and loads the lazy registries (shapes, detectors) inside that
block too, so only our code is instrumented (instrumenting pydantic and friends takes minutes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run(test_one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""The CPU one exchange may spend in detectors (`settings.max_exchange_cpu_ms`): past it, the detectors still to
run are not run and their rules' `on_error` decides (fail_closed: 503 `work_budget_exceeded`; fail_open: the
rule is skipped). CPU is measured per thread (`time.thread_time`), so a scan in a worker thread counts the same
and time spent waiting for the GIL does not."""

from __future__ import annotations

import time


class WorkBudget:
    __slots__ = ("left",)

    def __init__(self, milliseconds: float | None) -> None:
        self.left = float("inf") if milliseconds is None else milliseconds / 1000

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def charge(self, seconds: float) -> None:
        self.left -= seconds


def cpu_now() -> float:
    return time.thread_time()

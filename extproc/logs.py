"""structlog configured for one JSON object per line on stdout. Events are snake_case past tense."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


class _CurrentStdout:
    """Writes to whatever `sys.stdout` is at write time: a stream captured when logging was configured (a test
    runner's capture) may be closed by the time a later event is logged."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj).decode()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)

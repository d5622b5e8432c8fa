"""Fixtures for the chassis unit tests (no I/O beyond in-process ASGI calls)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from chassis.logging import configure_logging
from chassis.settings import Settings


class LogCapture:
    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Configure logging as a service does, into a buffer; restore the previous setup afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    capture = LogCapture()
    configure_logging(Settings(ORCHARD_SERVICE="wallet", ORCHARD_LOG_LEVEL="DEBUG"), stream=capture.buffer)
    yield capture
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()

"""The whole system as `orchard up` runs it, once per module (see tests/system.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system import System, running_system


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system() as running:
        yield running

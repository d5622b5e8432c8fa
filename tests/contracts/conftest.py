"""One valid payload per topic (`samples`), so every contract can be exercised end to end."""

from __future__ import annotations

import pytest

from contracts.envelope import EventData
from tests.contracts.samples import sample_payloads


@pytest.fixture
def samples() -> dict[str, EventData]:
    return sample_payloads()

"""Fixtures for fault tests: extra service schemas and probe processes that are always stopped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from deploy.infra.postgres import drop_service, provision_service
from tests.faults.probes import ProbeProcess


@pytest.fixture
async def make_schema() -> AsyncIterator[Callable[..., object]]:
    """Provision a fresh schema + role on a given admin DSN; returns (dsn, schema)."""
    made: list[tuple[str, str, str]] = []

    async def make(admin_dsn: str, prefix: str = "probe") -> tuple[str, str]:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        dsn = await provision_service(
            admin_dsn, service=name, schema=name, role=name, password=uuid.uuid4().hex
        )
        made.append((admin_dsn, name, name))
        return dsn, name

    yield make
    for admin_dsn, schema, role in made:
        with contextlib.suppress(Exception):  # the server may be gone already in a fault test
            await drop_service(admin_dsn, schema=schema, role=role)


@pytest.fixture
def probes(tmp_path) -> Callable[..., ProbeProcess]:
    started: list[ProbeProcess] = []

    def make(mode: str, **kwargs: str) -> ProbeProcess:
        probe = ProbeProcess(mode, log_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(probe)
        return probe

    yield make
    for probe in started:
        probe.kill()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """The table of fault scenarios (records sent, completed, lost, doubled) at the end of the run,
    visible in CI output without `-s`, and the same as JSON under var/."""
    from tests.faults.invariants import RESULTS, table, write_results

    if not RESULTS:
        return
    terminalreporter.section("fault scenarios")
    for line in table(RESULTS):
        terminalreporter.write_line(line)
    path = write_results(RESULTS)
    terminalreporter.write_line(f"(written to {path})")

"""Which processes `orchard up` adds for people: the local identity provider (development only) and
the console, and what they and the services are told about each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from chassis.settings import SERVICE_PORTS
from deploy.runner import StackConfig, managed_processes, production_refusals


def config(env: str = "dev") -> StackConfig:
    return StackConfig(
        Path("/tmp/orchard-unused"),
        service_ports=SERVICE_PORTS,
        identity_port=8180,
        console_port=8100,
        env=env,
    )


def test_in_development_the_provider_starts_first_and_the_console_last() -> None:
    names = [spec.name for spec in managed_processes(config())]
    assert names[0] == "identity"
    assert names[-1] == "console"


def test_services_and_console_trust_the_local_provider_and_the_console_finds_every_service() -> None:
    specs = {spec.name: spec for spec in managed_processes(config())}
    issuer = "http://127.0.0.1:8180/realms/orchard"
    assert all(specs[name].env["ORCHARD_OIDC_ISSUER"] == issuer for name in SERVICE_PORTS)
    console = specs["console"].env
    assert console["ORCHARD_OIDC_ISSUER"] == issuer
    assert console["ORCHARD_ORDER_URL"] == "http://127.0.0.1:8101"
    assert specs["identity"].env["ORCHARD_CONSOLE_URL"] == "http://127.0.0.1:8100"


def test_outside_development_no_provider_runs_and_no_console_without_an_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORCHARD_OIDC_ISSUER", raising=False)
    names = {spec.name for spec in managed_processes(config("production"))}
    assert not names & {"identity", "console"}


def test_outside_development_the_console_says_what_it_lacks_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHARD_OIDC_ISSUER", "https://id.example.com/realms/orchard")
    monkeypatch.delenv("ORCHARD_CONSOLE_CLIENT_SECRET", raising=False)
    lines = [line for line in production_refusals(config("production")) if line.startswith("console: ")]
    assert any("ORCHARD_CONSOLE_CLIENT_SECRET" in line for line in lines)

"""Every service under generated input (DESIGN.md §5 "Bodies and anonymity"): no request, however
malformed, is answered with a 5xx, and every answer matches the schema its OpenAPI document gives.

Inputs come from each served OpenAPI document, as `schemathesis run` makes them: the examples, the
coverage phase (boundary and invalid values of every parameter: NUL bytes, numbers past every
column's range, wrong types, missing fields) and random fuzzing, with a fixed seed. They are sent over
real HTTP to the whole system running on its own broker and database, each with a token for a role
the route admits. `ORCHARD_FUZZ_EXAMPLES` raises the random examples per operation (`make fuzz`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status
from schemathesis.engine import events as engine_events

from chassis.auth import Role
from tests.fuzz.conftest import MEMBER_ID, admitted_roles, member_routes
from tests.system import SERVICES, System

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(1800)]

MAX_EXAMPLES = int(os.environ.get("ORCHARD_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("ORCHARD_FUZZ_SEED", "20261205"))
CHECKS = ("not_a_server_error", "response_schema_conformance")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fuzz_config(
    base_url: str,
    tokens: dict[Role, str],
    roles: dict[str, Role],
    *,
    default: Role = Role.ADMIN,
    parameters: dict[str, str] | None = None,
) -> SchemathesisConfig:
    """Every operation called with the token of `default`, or of the role `roles` names for it."""
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            "headers": bearer(tokens[default]),
            "parameters": parameters or {},
            "continue-on-failure": True,
            "workers": 1,
            "request-timeout": 30,
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                # The tokens are ours (above), never generated.
                "with-security-parameters": False,
                "database": "none",
            },
            "operations": [
                {"include-name": label, "headers": bearer(tokens[role])}
                for label, role in roles.items()
                if role is not default
            ],
        }
    )


@dataclass
class FuzzOutcome:
    requests: int = 0
    operations: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def fuzz(schema: schemathesis.BaseSchema, into: FuzzOutcome | None = None) -> FuzzOutcome:
    outcome = into if into is not None else FuzzOutcome()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            recorder = event.recorder
            outcome.requests += len(recorder.interactions)
            if event.label:
                outcome.operations.add(event.label)
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        outcome.failures.append(
                            f"{recorder.label}: {check.name}: {failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, engine_events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, engine_events.FatalError):
            raise event.exception
    return outcome


def refused_only_by_the_database(log: Path, since: int) -> list[str]:
    """The routes whose input got past the request models and was refused by the database (a 422
    naming no field), from the service's log lines written after byte `since`."""
    records = []
    with log.open("rb") as lines:
        lines.seek(since)
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
    refused = {r["request_id"] for r in records if r.get("event") == "input_refused_by_database"}
    return sorted(
        {
            f"{r['method']} {r['route']}"
            for r in records
            if r.get("event") == "http_request" and r.get("request_id") in refused
        }
    )


@pytest.mark.parametrize("service", SERVICES)
def test_no_input_is_answered_with_a_server_error_and_every_answer_matches_its_schema(
    fuzz_system: System, fuzz_tokens: dict[Role, str], service: str, record_property: Any
) -> None:
    url = fuzz_system.urls[service]
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    roles = admitted_roles(url, document, fuzz_tokens)
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(url, fuzz_tokens, roles))
    log = fuzz_system.config.log_file(service)
    log_start = log.stat().st_size

    outcome = fuzz(schema)

    record_property("fuzz_requests", outcome.requests)
    print(f"{service}: {outcome.requests} requests to {len(outcome.operations)} operations")
    assert not outcome.errors, "\n\n".join(outcome.errors)
    assert not outcome.failures, "\n\n".join(dict.fromkeys(outcome.failures))
    assert outcome.operations, "no operation was fuzzed"
    # Bad input is refused naming its field (DESIGN.md §5): the database's refusal is a last resort.
    assert not refused_only_by_the_database(log, log_start)


def test_a_member_acting_on_their_own_account_gets_no_server_error_and_answers_match_their_schema(
    fuzz_system: System, fuzz_tokens: dict[Role, str], record_property: Any
) -> None:
    """Every route a member may call, with a member's token and their own id in the path, so the
    member's side of each handler (not the 403 in front of it) meets the generated input."""
    outcome = FuzzOutcome()
    for service in SERVICES:
        url = fuzz_system.urls[service]
        document = member_routes(url, httpx.get(f"{url}/openapi.json", timeout=10).json(), fuzz_tokens)
        if not document["paths"]:
            continue
        parameters = {"path.member_id": MEMBER_ID}
        config = fuzz_config(url, fuzz_tokens, {}, default=Role.MEMBER, parameters=parameters)
        fuzz(schemathesis.openapi.from_dict(document, config=config), into=outcome)

    record_property("fuzz_requests", outcome.requests)
    print(f"member: {outcome.requests} requests to {len(outcome.operations)} operations")
    assert not outcome.errors, "\n\n".join(outcome.errors)
    assert not outcome.failures, "\n\n".join(dict.fromkeys(outcome.failures))
    assert outcome.operations, "no route admits members"


def _undescribed(schema: dict[str, Any]) -> bool:
    """A schema that says nothing about the answer's fields: empty, or any object at all."""
    if "$ref" in schema:
        return False
    if not schema:
        return True
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and schema.get("additionalProperties", True) in (True, {})
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_successful_answer_of_every_route_is_described(fuzz_system: System, service: str) -> None:
    document = httpx.get(f"{fuzz_system.urls[service]}/openapi.json", timeout=10).json()

    undescribed = [
        f"{method.upper()} {path} {status} {media_type}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status.startswith("2") and status != "204"
        for media_type, content in (response.get("content") or {"(none)": {}}).items()
        if _undescribed(content.get("schema", {}))
    ]

    assert not undescribed, "answers without a response model:\n" + "\n".join(undescribed)

"""The fuzz suite's system and tokens: the whole system once per module, as `orchard up` runs it.

Each service's OpenAPI document is read from the running service, so what is fuzzed is what is
served. Every request carries a valid token for a role the route admits (admin where it may, the one
role it admits otherwise), so the generated inputs reach the handlers instead of the 401 in front.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chassis.auth import Role, issue_token
from tests.system import System, running_system

# Admin first: a route that refuses it is tried with each other role until one is admitted.
PROBE_ORDER = (Role.ADMIN, *(role for role in Role if role is not Role.ADMIN))


# The member the member pass acts as: its token's subject, and the member id in every path.
MEMBER_ID = "fuzz-member-01"


def _probe_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "probe", path.replace("{member_id}", MEMBER_ID))


def _secured_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each operation that asks for a token: its path, method and OpenAPI operation."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security"):
                yield path, method, operation


def _admits(client: httpx.Client, path: str, method: str, operation: dict[str, Any], token: str) -> bool:
    """Whether the operation's role check lets this token through (placeholder parameters)."""
    response = client.request(
        method.upper(),
        _probe_path(path),
        headers={"Authorization": f"Bearer {token}"},
        json={} if "requestBody" in operation else None,
    )
    return response.status_code != 403


def admitted_roles(base_url: str, document: dict[str, Any], tokens: dict[Role, str]) -> dict[str, Role]:
    """The role to call each secured operation with, by its label (`POST /v1/orders`).

    A route's role check answers 403 before the request is validated, so one request per role with
    placeholder parameters tells which role gets through.
    """
    roles: dict[str, Role] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for path, method, operation in _secured_operations(document):
            # A route no role gets through (one only a member may call for their own account)
            # is still fuzzed, with the admin token.
            admitted = (r for r in PROBE_ORDER if _admits(client, path, method, operation, tokens[r]))
            role = next(admitted, None)
            if role is not None:
                roles[f"{method.upper()} {path}"] = role
    return roles


def member_routes(base_url: str, document: dict[str, Any], tokens: dict[Role, str]) -> dict[str, Any]:
    """The document with only the operations a member's token gets through (on their own account)."""
    paths: dict[str, Any] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for path, method, operation in _secured_operations(document):
            if _admits(client, path, method, operation, tokens[Role.MEMBER]):
                paths.setdefault(path, {})[method] = operation
    return {**document, "paths": paths}


@pytest.fixture(scope="module")
def fuzz_system() -> Iterator[System]:
    with running_system() as system:
        yield system


@pytest.fixture(scope="module")
def fuzz_tokens() -> dict[Role, str]:
    return {
        role: issue_token(role=role, sub=MEMBER_ID if role is Role.MEMBER else f"fuzz-{role}")
        for role in Role
    }

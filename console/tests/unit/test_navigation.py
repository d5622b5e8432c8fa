"""Who sees which screen, and the console's independence from the services' code."""

from __future__ import annotations

import ast
from pathlib import Path

from console.auth import roles_of, safe_next
from console.navigation import screens_for

CONSOLE = Path(__file__).resolve().parents[2]


def test_a_member_sees_only_their_own_wallet_and_tickets() -> None:
    assert [s.key for s in screens_for({"member"})] == ["wallet", "support"]


def test_ops_sees_orders_members_deliveries_campaigns_and_operations() -> None:
    assert [s.key for s in screens_for({"ops"})] == [
        "orders",
        "members",
        "intake",
        "deliveries",
        "support",
        "campaigns",
        "redemptions",
        "operations",
    ]


def test_finance_reads_orders_members_campaigns_and_redemptions_but_no_operations() -> None:
    assert [s.key for s in screens_for({"finance"})] == ["orders", "members", "campaigns", "redemptions"]


def test_a_partner_sees_only_the_redemptions_dashboard() -> None:
    assert [s.key for s in screens_for({"partner"})] == ["redemptions"]


def test_after_sign_in_only_local_paths_are_followed() -> None:
    assert safe_next("/orders?state=pending") == "/orders?state=pending"
    for hostile in ("https://evil.example/", "//evil.example", "/\\evil.example", "", None):
        assert safe_next(hostile) == "/"


def test_roles_come_from_the_roles_claim_or_keycloak_realm_access() -> None:
    assert roles_of({"roles": ["ops", "offline_access"]}) == {"ops", "offline_access"}
    assert roles_of({"realm_access": {"roles": ["finance"]}}) == {"finance"}
    assert roles_of({"roles": "ops"}) == frozenset()


def test_the_console_imports_no_service_module() -> None:
    offenders = []
    for path in CONSOLE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "services"]
    assert offenders == []

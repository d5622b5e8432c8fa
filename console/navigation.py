"""Which screens exist and who may use them: each role sees only what the services let it do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ADMIN, OPS, FINANCE, AGENT, AUDITOR, MEMBER, PARTNER, HRIS = (
    "admin", "ops", "finance", "support_agent", "auditor", "member", "partner", "hris",
)  # fmt: skip


@dataclass(frozen=True)
class Screen:
    key: str
    title: str
    path: str
    roles: frozenset[str]
    blurb: str


SCREENS: tuple[Screen, ...] = (
    Screen("orders", "Orders", "/orders", frozenset({ADMIN, OPS, FINANCE, AGENT, AUDITOR}),
           "Pending, cancelled and completed orders per hour; timelines; cancel, one or in bulk."),
    Screen("members", "Members", "/members", frozenset({ADMIN, OPS, FINANCE, AGENT, AUDITOR}),
           "A member's wallet, points earned and burned per day, and history."),
    Screen("wallet", "My wallet", "/me", frozenset({MEMBER}),
           "Your points, their history and your rewards."),
    Screen("intake", "Intake", "/intake", frozenset({ADMIN, OPS, HRIS}),
           "Upload an IPA file and watch it through validation to orders."),
    Screen("deliveries", "Deliveries", "/deliveries", frozenset({ADMIN, OPS, AGENT}),
           "Failed deliveries: correct the recipient and resend, one or many; success by channel."),
    Screen("support", "Support", "/support", frozenset({ADMIN, OPS, AGENT, AUDITOR, MEMBER}),
           "Tickets with their SLA timers; open, answer and move them; SLA compliance."),
    Screen("campaigns", "Campaigns", "/campaigns", frozenset({ADMIN, OPS, FINANCE}),
           "Campaigns and their code stock: create, edit, generate and import codes, extend, recover."),
    Screen("redemptions", "Redemptions", "/redemptions", frozenset({ADMIN, OPS, FINANCE, AUDITOR, PARTNER}),
           "Redemptions per day, partner and channel, their records and exports."),
    Screen("operations", "Operations", "/operations", frozenset({ADMIN, OPS}),
           "Health, consumer and outbox lag, dead letters to replay, approvals."),
)  # fmt: skip
_BY_KEY = {screen.key: screen for screen in SCREENS}


def screen(key: str) -> Screen:
    return _BY_KEY[key]


def screens_for(roles: Iterable[str]) -> list[Screen]:
    """The screens someone holding `roles` may open, in menu order."""
    held = frozenset(roles)
    return [screen for screen in SCREENS if screen.roles & held]


def may(roles: Iterable[str], *allowed: str) -> bool:
    return not frozenset(roles).isdisjoint(allowed)

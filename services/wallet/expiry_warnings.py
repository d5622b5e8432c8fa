"""The expiry warning job: a member whose points expire within `ORCHARD_WALLET_EXPIRY_WARNING_DAYS` is
told once per expiry day, by the delivery service (`delivery.message_requested` with notice `points_expiring`:
delivery skips it if the member opted out, and picks their preferred channel)."""

from __future__ import annotations

import uuid
from typing import Final

import asyncpg

from chassis.clock import Clock
from chassis.outbox import add_event
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope
from contracts.members import NotificationKind
from contracts.topics import Topics
from contracts.values import Channel

from . import repository as repo
from .ledger import PRODUCER

WARNING_IDS: Final = uuid.UUID("0d3f6f0e-93a4-4b4b-8a57-3c1e2f7a9b61")
"""Namespace of the warnings' message ids: one per member and expiry day, so a repeat sends once."""


def warning_message(warning: repo.ExpiryWarning, *, days_left: int) -> DeliveryMessageRequested:
    kind = NotificationKind.POINTS_EXPIRING
    return DeliveryMessageRequested(
        message_id=uuid.uuid5(WARNING_IDS, f"{warning.member_id}:{warning.expires_on.isoformat()}"),
        member_id=warning.member_id,
        channel=Channel.EMAIL,
        template=kind.value,
        notice=kind,
        params={
            "points": str(warning.points),
            "expires_on": warning.expires_on.isoformat(),
            "days_left": str(max(days_left, 0)),
        },
    )


async def warn_expiring(pool: asyncpg.Pool, clock: Clock, *, within_days: int, batch: int = 200) -> int:
    """The job's run: every member and expiry day due a warning, `batch` per transaction, each recorded
    and published (outbox) together. Returns how many warnings were sent."""
    sent = 0
    while True:
        now = clock.now()
        async with pool.acquire() as conn, conn.transaction():
            warnings = await repo.claim_expiry_warnings(conn, now, within_days, batch)
            for warning in warnings:
                message = warning_message(warning, days_left=(warning.expires_on - now.date()).days)
                envelope = Envelope.new(
                    event_type=Topics.DELIVERY_MESSAGE_REQUESTED, producer=PRODUCER, data=message
                )
                await add_event(conn, envelope, key=warning.member_id)
        sent += len(warnings)
        if len(warnings) < batch:
            return sent

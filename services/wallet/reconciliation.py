"""The monthly reconciliation: once a month has ended, its month-end summary goes by e-mail to the
finance distribution list (`ORCHARD_WALLET_FINANCE_REPORT_EMAILS`), through the delivery service
(`delivery.message_requested`, template `monthly_reconciliation`).

Each month is claimed once (`reconciliation_reports`) in the transaction that writes the messages to
the outbox, so replicas and reruns never send it twice; message ids are derived from the month and
the address, so delivery sends each once even if an event is redelivered. Only the month just ended
is sent: one missed while the service was down for a whole month is not sent later.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from chassis.clock import Clock
from chassis.outbox import add_event
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope
from contracts.topics import Topics
from contracts.values import Channel

from . import finance
from .ledger import PRODUCER
from .repository import finance as finance_repo

TEMPLATE: Final = "monthly_reconciliation"
RECIPIENT_ID: Final = "finance-distribution"
"""The delivery directory's id for the list's messages (they go to the address each one carries)."""
MESSAGE_IDS: Final = uuid.UUID("6a1c2f4e-0b7d-4e59-9d2a-5f3b8c1e7a40")

_PARAMS: Final = (
    "month",
    "opening_points",
    "earned",
    "refunded",
    "burned",
    "expired",
    "adjusted_credit",
    "adjusted_debit",
    "adjusted_net",
    "closing_points",
)


def month_just_ended(now: datetime) -> str:
    return (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def reconciliation_message(summary: dict[str, Any], email: str) -> DeliveryMessageRequested:
    params = {name: str(summary[name]) for name in _PARAMS}
    params["reconciles"] = "yes" if summary["reconciles"] else "NO"
    return DeliveryMessageRequested(
        message_id=uuid.uuid5(MESSAGE_IDS, f"{summary['month']}:{email.lower()}"),
        member_id=RECIPIENT_ID,
        channel=Channel.EMAIL,
        template=TEMPLATE,
        name="Finance",
        email=email,
        params=params,
    )


async def send_reconciliation(pool: asyncpg.Pool, clock: Clock, recipients: Sequence[str]) -> str | None:
    """The job's run: the month just ended, summarised and sent once to every recipient. Returns the
    month when this run sent it."""
    if not recipients:
        return None
    month = month_just_ended(clock.now())
    start, end = finance.month_bounds(month)
    async with pool.acquire() as conn, conn.transaction():
        if not await finance_repo.claim_reconciliation(conn, month, clock.now(), len(recipients)):
            return None
        summary = finance.month_end_view(month, start, end, await finance.month_end(conn, start, end))
        for email in recipients:
            envelope = Envelope.new(
                event_type=Topics.DELIVERY_MESSAGE_REQUESTED,
                producer=PRODUCER,
                data=reconciliation_message(summary, email),
            )
            await add_event(conn, envelope, key=RECIPIENT_ID)
    return month

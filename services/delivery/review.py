"""Failure review use cases: correct a recipient's details and resend, audited with the actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection
from contracts.values import Channel

from . import repository
from .domain import DeliveryNotFound, DeliveryStatus, NotResendable, check_resend


async def _locked(conn: Connection, delivery_id: uuid.UUID) -> asyncpg.Record:
    row = await repository.lock_delivery(conn, delivery_id)
    if row is None:
        raise DeliveryNotFound(f"No delivery {delivery_id}.")
    return row


async def _audit(
    conn: Connection, action: str, row: asyncpg.Record, actor: str, details: dict[str, Any]
) -> None:
    """Support's change to a delivery, audited with its order first among the details."""
    await append_audit(
        conn,
        actor=actor,
        action=action,
        subject_type="delivery",
        subject_id=str(row["delivery_id"]),
        details={"order_id": str(row["order_id"]), **details},
    )


async def resend(conn: Connection, delivery_id: uuid.UUID, *, actor: str, reason: str | None) -> str:
    """Queue a new send round (at most one per minute per delivery); returns the channel used first.
    Raises DeliveryNotFound, NotResendable or ResendTooSoon, changing nothing."""
    row = await _locked(conn, delivery_id)
    if row["kind"] != "voucher":
        raise NotResendable("A message is sent again by whoever requested it, with a new message_id.")
    check_resend(
        status=DeliveryStatus(row["status"]),
        has_code=row["code_ciphertext"] is not None,
        last_resend_at=row["last_resend_at"],
        now=await repository.database_now(conn) or datetime.now(UTC),
    )
    channel = await repository.start_resend(conn, delivery_id)
    details = {"channel": channel, "send_round": row["send_round"] + 1, "reason": reason}
    await _audit(conn, "delivery.resend", row, actor, details)
    return channel


async def correct_recipient(
    conn: Connection,
    delivery_id: uuid.UUID,
    *,
    actor: str,
    email: str | None,
    phone: str | None,
    channel: Channel | None,
) -> None:
    """Correct the contact details (the audit names which fields changed, never their values)."""
    row = await _locked(conn, delivery_id)
    await repository.correct_contacts(conn, delivery_id, email=email, phone=phone, channel=channel)
    changed = [name for name, value in (("email", email), ("phone", phone)) if value is not None]
    details = {"changed": changed, "channel": channel.value if channel else row["requested_channel"]}
    await _audit(conn, "delivery.recipient_corrected", row, actor, details)

"""Failure review use cases: correct a recipient's details and resend, audited with the actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

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
    await append_audit(
        conn,
        actor=actor,
        action="delivery.resend",
        subject_type="delivery",
        subject_id=str(delivery_id),
        details={
            "order_id": str(row["order_id"]),
            "channel": channel,
            "send_round": row["send_round"] + 1,
            "reason": reason,
        },
    )
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
    await append_audit(
        conn,
        actor=actor,
        action="delivery.recipient_corrected",
        subject_type="delivery",
        subject_id=str(delivery_id),
        details={
            "order_id": str(row["order_id"]),
            "changed": changed,
            "channel": channel.value if channel else row["requested_channel"],
        },
    )

"""SQL of the delivery service (its own schema): the join/queue table, attempts, campaign settings."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection
from contracts.values import Channel

from .domain import AttemptOutcome, SendResult

WAKE_CHANNEL = "orchard_delivery_due"


@dataclass(frozen=True)
class RequestDetails:
    order_id: uuid.UUID
    booking_id: str
    member_id: str
    campaign_id: str
    channel: Channel
    name: str | None
    email: str | None
    phone: str | None
    locale: str
    template: str | None
    correlation_id: str


@dataclass(frozen=True)
class VoucherDetails:
    order_id: uuid.UUID
    campaign_id: str
    code_id: uuid.UUID
    sealed_code: bytes
    masked_code: str
    face_value: Decimal
    currency: str
    expires_at: datetime | None
    correlation_id: str


async def record_request(conn: Connection, r: RequestDetails) -> None:
    """The recipient half of the join; a repeated request for the same order changes nothing."""
    await conn.execute(
        """
        INSERT INTO deliveries (delivery_id, order_id, booking_id, member_id, campaign_id, requested_channel,
                                channel, recipient_name, email, phone, locale, template, has_request,
                                correlation_id)
        VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, true, $12)
        ON CONFLICT (order_id) DO UPDATE SET
            booking_id = EXCLUDED.booking_id, member_id = EXCLUDED.member_id,
            campaign_id = coalesce(deliveries.campaign_id, EXCLUDED.campaign_id),
            requested_channel = EXCLUDED.requested_channel, channel = EXCLUDED.channel,
            recipient_name = EXCLUDED.recipient_name, email = EXCLUDED.email, phone = EXCLUDED.phone,
            locale = EXCLUDED.locale, template = EXCLUDED.template, has_request = true,
            correlation_id = coalesce(deliveries.correlation_id, EXCLUDED.correlation_id),
            updated_at = now()
        WHERE NOT deliveries.has_request
        """,
        uuid.uuid4(),
        r.order_id,
        r.booking_id,
        r.member_id,
        r.campaign_id,
        r.channel.value,
        r.name,
        r.email,
        r.phone,
        r.locale,
        r.template,
        r.correlation_id,
    )


async def record_voucher(conn: Connection, v: VoucherDetails) -> None:
    """The code half of the join; kept sealed, and not at all for an order already cancelled."""
    await conn.execute(
        """
        INSERT INTO deliveries (delivery_id, order_id, campaign_id, code_id, code_ciphertext, masked_code,
                                face_value, currency, expires_at, has_voucher, correlation_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10)
        ON CONFLICT (order_id) DO UPDATE SET
            campaign_id = coalesce(deliveries.campaign_id, EXCLUDED.campaign_id),
            code_id = EXCLUDED.code_id,
            code_ciphertext = CASE WHEN deliveries.order_state = 'cancelled' THEN NULL
                                   ELSE EXCLUDED.code_ciphertext END,
            masked_code = EXCLUDED.masked_code, face_value = EXCLUDED.face_value,
            currency = EXCLUDED.currency, expires_at = EXCLUDED.expires_at, has_voucher = true,
            correlation_id = coalesce(deliveries.correlation_id, EXCLUDED.correlation_id),
            updated_at = now()
        WHERE NOT deliveries.has_voucher
        """,
        uuid.uuid4(),
        v.order_id,
        v.campaign_id,
        v.code_id,
        v.sealed_code,
        v.masked_code,
        v.face_value,
        v.currency,
        v.expires_at,
        v.correlation_id,
    )


async def queue_if_ready(conn: Connection, order_id: uuid.UUID) -> bool:
    """Both halves here and the order not cancelled: the delivery becomes due now, and workers wake."""
    queued = await conn.fetchval(
        """
        UPDATE deliveries SET status = 'queued', next_attempt_at = now(), updated_at = now()
         WHERE order_id = $1 AND status = 'waiting' AND has_request AND has_voucher
           AND order_state IS DISTINCT FROM 'cancelled'
        RETURNING channel
        """,
        order_id,
    )
    if queued is not None:
        await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, queued)
    return queued is not None


async def record_order_state(conn: Connection, order_id: uuid.UUID, campaign_id: str, state: str) -> bool:
    """Follow the order; on cancellation stop the delivery and drop its code. True if it was cancelled now.

    A delivery being sent right now holds its row lock until the send is recorded, so this waits for
    it: the cancellation lands either before the send (nothing is sent) or after it (it was sent)."""
    if state != "cancelled":
        await conn.execute(
            "UPDATE deliveries SET order_state = $2, updated_at = now()"
            " WHERE order_id = $1 AND order_state IS DISTINCT FROM 'cancelled'",
            order_id,
            state,
        )
        return False
    row = await conn.fetchrow(
        """
        INSERT INTO deliveries (delivery_id, order_id, campaign_id, order_state, status)
        VALUES ($1, $2, $3, 'cancelled', 'cancelled')
        ON CONFLICT (order_id) DO UPDATE SET
            order_state = 'cancelled',
            status = CASE WHEN deliveries.status = 'sent' THEN 'sent' ELSE 'cancelled' END,
            code_ciphertext = NULL, next_attempt_at = NULL, updated_at = now()
        RETURNING (xmax = 0) AS inserted, status
        """,
        uuid.uuid4(),
        order_id,
        campaign_id,
    )
    assert row is not None
    return bool(row["status"] == "cancelled")


async def remember_contacts(
    conn: Connection,
    member_id: str,
    *,
    name: str | None,
    email: str | None,
    phone: str | None,
    locale: str | None,
) -> None:
    """The latest details per member; a missing field keeps the one known before."""
    await conn.execute(
        """
        INSERT INTO member_contacts (member_id, name, email, phone, locale) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (member_id) DO UPDATE SET
            name = coalesce(EXCLUDED.name, member_contacts.name),
            email = coalesce(EXCLUDED.email, member_contacts.email),
            phone = coalesce(EXCLUDED.phone, member_contacts.phone),
            locale = coalesce(EXCLUDED.locale, member_contacts.locale),
            updated_at = now()
        """,
        member_id,
        name,
        email,
        phone,
        locale,
    )


async def contacts_of(conn: Connection, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM member_contacts WHERE member_id = $1", member_id)


@dataclass(frozen=True)
class MessageDetails:
    message_id: uuid.UUID
    member_id: str
    channel: Channel
    template: str
    locale: str
    sealed_params: bytes
    name: str | None
    email: str | None
    phone: str | None
    correlation_id: str


async def queue_message(conn: Connection, m: MessageDetails) -> bool:
    """Queue a templated message once per message_id; False for a repeat."""
    channel = await conn.fetchval(
        """
        INSERT INTO deliveries (delivery_id, kind, message_id, member_id, requested_channel, channel,
                                recipient_name, email, phone, locale, template, has_request,
                                code_ciphertext, has_voucher, status, next_attempt_at, correlation_id)
        VALUES ($1, 'message', $2, $3, $4, $4, $5, $6, $7, $8, $9, true, $10, true, 'queued', now(), $11)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING channel
        """,
        uuid.uuid4(),
        m.message_id,
        m.member_id,
        m.channel.value,
        m.name,
        m.email,
        m.phone,
        m.locale,
        m.template,
        m.sealed_params,
        m.correlation_id,
    )
    if channel is not None:
        await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, channel)
    return channel is not None


def idempotency_key(delivery_id: uuid.UUID, send_round: int, channel: str) -> str:
    return f"{delivery_id}:{send_round}:{channel}"


async def claim_due(
    conn: Connection, channel: Channel, lease_s: float, limit: int = 1
) -> list[asyncpg.Record]:
    """Take up to `limit` due deliveries of a channel and write their attempt rows, before anything is
    sent, in one statement (one round trip, one commit for the batch). The idempotency key is built as
    `idempotency_key()` builds it."""
    return await conn.fetch(
        """
        WITH next AS (
            SELECT delivery_id FROM deliveries
             WHERE status = 'queued' AND channel = $1 AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE deliveries d
               SET status = 'sending', attempts = d.attempts + 1, channel_attempts = d.channel_attempts + 1,
                   lease_until = now() + make_interval(secs => $2), updated_at = now()
              FROM next WHERE d.delivery_id = next.delivery_id
            RETURNING d.delivery_id, d.attempts, d.send_round, d.channel, d.next_attempt_at
        ), recorded AS (
            INSERT INTO delivery_attempts (delivery_id, attempt, channel, send_round, idempotency_key)
            SELECT delivery_id, attempts, channel, send_round,
                   delivery_id::text || ':' || send_round::text || ':' || channel
              FROM claimed
        )
        SELECT * FROM claimed ORDER BY next_attempt_at, delivery_id
        """,
        channel.value,
        lease_s,
        limit,
    )


async def lock_delivery(conn: Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1 FOR UPDATE", delivery_id)


async def lock_free_deliveries(conn: Connection, delivery_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Lock the claimed deliveries nobody else holds right now (a handler following the order may be
    updating one); the rest are left for the caller to wait for one at a time, so a sender never holds
    some rows while waiting for another (no lock cycle with a handler's batch)."""
    return await conn.fetch(
        "SELECT * FROM deliveries WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id"
        " FOR UPDATE SKIP LOCKED",
        delivery_ids,
    )


async def finish_attempt(
    conn: Connection, delivery_id: uuid.UUID, attempt: int, outcome: AttemptOutcome, result: SendResult | None
) -> None:
    await conn.execute(
        """
        UPDATE delivery_attempts
           SET outcome = $3, finished_at = now(), reason_code = $4, retryable = $5,
               provider_message_id = $6, provider_response = $7
         WHERE delivery_id = $1 AND attempt = $2
        """,
        delivery_id,
        attempt,
        outcome.value,
        result.reason_code.value if result and result.reason_code else None,
        result.retryable if result and not result.ok else None,
        result.provider_message_id if result else None,
        result.response if result else None,
    )


async def record_sent(conn: Connection, sent: list[tuple[uuid.UUID, int, SendResult]]) -> None:
    """Successful attempts of a batch: each attempt's answer and its delivery `sent`, in one statement."""
    await conn.execute(
        """
        WITH answers AS (
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[])
                       AS s(delivery_id, attempt, provider_message_id, provider_response)
        ), finished AS (
            UPDATE delivery_attempts a
               SET outcome = 'succeeded', finished_at = now(), provider_message_id = s.provider_message_id,
                   provider_response = s.provider_response
              FROM answers s WHERE a.delivery_id = s.delivery_id AND a.attempt = s.attempt
        )
        UPDATE deliveries
           SET status = 'sent', sent_at = now(), lease_until = NULL, next_attempt_at = NULL,
               last_reason_code = NULL, updated_at = now()
         WHERE delivery_id = ANY($1::uuid[])
        """,
        [d for d, _, _ in sent],
        [a for _, a, _ in sent],
        [r.provider_message_id for _, _, r in sent],
        [r.response for _, _, r in sent],
    )


async def return_unsent(conn: Connection, unsent: list[tuple[uuid.UUID, int]], delay_s: float) -> None:
    """Claimed deliveries a batch stopped before sending (the provider is in trouble): nothing of them
    left, so their attempt rows go and they are queued again, due after `delay_s`."""
    await conn.execute(
        """
        WITH unsent AS (
            SELECT * FROM unnest($1::uuid[], $2::int[]) AS u(delivery_id, attempt)
        ), dropped AS (
            DELETE FROM delivery_attempts a USING unsent u
             WHERE a.delivery_id = u.delivery_id AND a.attempt = u.attempt AND a.outcome = 'pending'
        )
        UPDATE deliveries d
           SET status = 'queued', attempts = d.attempts - 1, channel_attempts = d.channel_attempts - 1,
               lease_until = NULL, next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
          FROM unsent u
         WHERE d.delivery_id = u.delivery_id AND d.attempts = u.attempt AND d.status = 'sending'
        """,
        [d for d, _ in unsent],
        [a for _, a in unsent],
        delay_s,
    )


async def mark_sent(conn: Connection, delivery_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', sent_at = now(), lease_until = NULL, next_attempt_at = NULL,"
        " last_reason_code = NULL, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
    )


async def schedule_retry(conn: Connection, delivery_id: uuid.UUID, at: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'queued', next_attempt_at = $2, lease_until = NULL,"
        " last_reason_code = $3, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
        at,
        reason,
    )


async def fall_back(
    conn: Connection, delivery_id: uuid.UUID, from_channel: str, to_channel: Channel, reason: str
) -> None:
    step = {"from": from_channel, "to": to_channel.value, "reason_code": reason}
    await conn.execute(
        """
        UPDATE deliveries
           SET status = 'queued', channel = $3, channel_attempts = 0, next_attempt_at = now(),
               lease_until = NULL, last_reason_code = $4,
               tried_channels = array_append(tried_channels, $2),
               fallback_trail = fallback_trail
                                || jsonb_build_array($5::jsonb || jsonb_build_object('at', now())),
               updated_at = now()
         WHERE delivery_id = $1
        """,
        delivery_id,
        from_channel,
        to_channel.value,
        reason,
        json.dumps(step),
    )
    await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, to_channel.value)


async def mark_failed(conn: Connection, delivery_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', failed_at = now(), lease_until = NULL,"
        " next_attempt_at = NULL, last_reason_code = $2, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
        reason,
    )


async def release_cancelled(conn: Connection, delivery_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, next_attempt_at = NULL,"
        " code_ciphertext = NULL, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
    )


async def flag_unknown_outcomes(conn: Connection) -> list[asyncpg.Record]:
    """Deliveries whose sender vanished (lease over, row not locked by a live send): their pending
    attempt's outcome is unknown. It is flagged, and the delivery is queued again with the same
    idempotency key (and Message-ID), so the provider can recognise a message that did leave."""
    rows = await conn.fetch(
        """
        WITH lost AS (
            SELECT delivery_id, attempts FROM deliveries
             WHERE status = 'sending' AND lease_until < now()
             FOR UPDATE SKIP LOCKED
        ), flagged AS (
            UPDATE delivery_attempts a
               SET outcome = 'unknown', finished_at = now(), reason_code = 'outcome_unknown',
                   retryable = true,
                   provider_response = 'the sender stopped before recording the outcome'
              FROM lost WHERE a.delivery_id = lost.delivery_id AND a.attempt = lost.attempts
               AND a.outcome = 'pending'
            RETURNING a.delivery_id
        )
        UPDATE deliveries d
           SET status = 'queued', next_attempt_at = now(), lease_until = NULL,
               last_reason_code = 'outcome_unknown', updated_at = now()
          FROM lost WHERE d.delivery_id = lost.delivery_id
        RETURNING d.delivery_id, d.order_id, d.channel
        """
    )
    for channel in {r["channel"] for r in rows}:
        await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, channel)
    return rows


async def fallback_allowed(conn: Connection, campaign_id: str | None, default: bool) -> bool:
    if campaign_id is None:
        return default
    allowed = await conn.fetchval(
        "SELECT fallback_allowed FROM campaign_settings WHERE campaign_id = $1", campaign_id
    )
    return default if allowed is None else bool(allowed)


async def set_campaign_fallback(conn: Connection, campaign_id: str, allowed: bool, actor: str) -> None:
    await conn.execute(
        """
        INSERT INTO campaign_settings (campaign_id, fallback_allowed, updated_by) VALUES ($1, $2, $3)
        ON CONFLICT (campaign_id) DO UPDATE
            SET fallback_allowed = EXCLUDED.fallback_allowed, updated_by = EXCLUDED.updated_by,
                updated_at = now()
        """,
        campaign_id,
        allowed,
        actor,
    )


async def purge_held_codes(conn: Connection, retention_days: int) -> int:
    result = await conn.execute(
        "UPDATE deliveries SET code_ciphertext = NULL"
        " WHERE code_ciphertext IS NOT NULL AND status = 'sent'"
        " AND sent_at < now() - make_interval(days => $1)",
        retention_days,
    )
    return int(result.split()[-1])


async def find_delivery(conn: Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1", delivery_id)


async def find_by_order(conn: Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE order_id = $1", order_id)


async def attempts_of(conn: Connection, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id
    )


@dataclass(frozen=True)
class FailedFilter:
    campaign_id: str | None = None
    channel: str | None = None
    reason_code: str | None = None
    failed_from: datetime | None = None
    failed_to: datetime | None = None
    limit: int = 100
    after: tuple[datetime, uuid.UUID] | None = None


async def list_failed(conn: Connection, f: FailedFilter) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT * FROM deliveries
         WHERE status = 'failed'
           AND ($1::text IS NULL OR campaign_id = $1)
           AND ($2::text IS NULL OR channel = $2)
           AND ($3::text IS NULL OR last_reason_code = $3)
           AND ($4::timestamptz IS NULL OR failed_at >= $4)
           AND ($5::timestamptz IS NULL OR failed_at < $5)
           AND ($6::timestamptz IS NULL OR (failed_at, delivery_id) < ($6, $7::uuid))
         ORDER BY failed_at DESC, delivery_id DESC
         LIMIT $8
        """,
        f.campaign_id,
        f.channel,
        f.reason_code,
        f.failed_from,
        f.failed_to,
        f.after[0] if f.after else None,
        f.after[1] if f.after else None,
        f.limit,
    )


async def correct_contacts(
    conn: Connection, delivery_id: uuid.UUID, *, email: str | None, phone: str | None, channel: Channel | None
) -> None:
    await conn.execute(
        """
        UPDATE deliveries SET email = coalesce($2, email), phone = coalesce($3, phone),
               channel = coalesce($4, channel), requested_channel = coalesce($4, requested_channel),
               updated_at = now()
         WHERE delivery_id = $1
        """,
        delivery_id,
        email,
        phone,
        channel.value if channel else None,
    )


async def start_resend(conn: Connection, delivery_id: uuid.UUID) -> str:
    """A new send round: a new idempotency key and Message-ID, the retry budget renewed, the
    recipient's chosen channel first again."""
    channel = await conn.fetchval(
        """
        UPDATE deliveries
           SET status = 'queued', send_round = send_round + 1, channel = requested_channel,
               channel_attempts = 0, tried_channels = '{}', next_attempt_at = now(), failed_at = NULL,
               last_resend_at = now(), updated_at = now()
         WHERE delivery_id = $1
        RETURNING channel
        """,
        delivery_id,
    )
    await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, channel)
    return str(channel)


def row_dict(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())

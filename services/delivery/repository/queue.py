"""The send queue. A worker claims due deliveries under a lease (their attempts on record, `pending`),
then for each in turn: starts the attempt (`in_flight`, a short statement that also checks the row
was not cancelled since the claim), sends with no transaction open, and records the outcome in a
short transaction — the same one that starts the next attempt. So at any instant a worker has at most
one message sent but not recorded, and the recovery job can tell that one (`in_flight`: its outcome
is unknown) from claims never sent (`pending`: simply queued again)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis.db import Connection
from chassis.wakeups import notify_after_commit
from contracts.values import Channel

from ..domain import AttemptOutcome, SendResult
from .join import WAKE_CHANNEL


def idempotency_key(delivery_id: uuid.UUID, send_round: int, channel: str) -> str:
    return f"{delivery_id}:{send_round}:{channel}"


@dataclass(frozen=True)
class Claim:
    """One claimed delivery: its attempt number and the lease it was claimed under. The lease's end is
    the claim's fencing token: once the recovery job has queued the row again (and another worker may
    have claimed it), it no longer matches and this claim is void."""

    delivery_id: uuid.UUID
    attempt: int
    lease_until: datetime


def claim_of(row: asyncpg.Record) -> Claim:
    return Claim(row["delivery_id"], row["attempts"], row["lease_until"])


async def claim_due(
    conn: Connection, channel: Channel, lease_s: float, limit: int = 1
) -> list[asyncpg.Record]:
    """Take up to `limit` due deliveries of a channel and write their attempt rows, in one statement.
    The first (in claim order) is started at once (`in_flight`: the worker sends it next; the claim
    itself checked it is not cancelled); the others stay `pending` until their turn (`start_attempt`).
    Rows come back whole, with `started` telling which one is in flight. The idempotency key is
    built as `idempotency_key()` builds it."""
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
            RETURNING d.*
        ), first AS (
            SELECT delivery_id FROM claimed ORDER BY next_attempt_at, delivery_id LIMIT 1
        ), recorded AS (
            INSERT INTO delivery_attempts (delivery_id, attempt, channel, send_round, idempotency_key,
                                           outcome)
            SELECT c.delivery_id, c.attempts, c.channel, c.send_round,
                   c.delivery_id::text || ':' || c.send_round::text || ':' || c.channel,
                   CASE WHEN c.delivery_id = (SELECT delivery_id FROM first) THEN 'in_flight'
                        ELSE 'pending' END
              FROM claimed c
        )
        SELECT c.*, c.delivery_id = (SELECT delivery_id FROM first) AS started
          FROM claimed c ORDER BY c.next_attempt_at, c.delivery_id
        """,
        channel.value,
        lease_s,
        limit,
    )


async def start_attempt(conn: Connection, claim: Claim, lease_s: float) -> asyncpg.Record | None:
    """Just before its send: mark a claimed attempt `in_flight` and renew its lease (the send gets a
    whole lease of its own however long the batch took), returning the row as it is now with
    `live` true. A delivery cancelled since the claim is not sent: its attempt becomes `skipped`, its
    lease and code go, and it comes back with `live` false. None: the claim is void (the recovery
    job queued the row again after the lease ended)."""
    return await conn.fetchrow(
        """
        WITH target AS (
            SELECT delivery_id, status = 'sending' AND order_state IS DISTINCT FROM 'cancelled' AS live
              FROM deliveries
             WHERE delivery_id = $1 AND attempts = $2 AND lease_until = $3
               AND status IN ('sending', 'cancelled')
               FOR UPDATE
        ), marked AS (
            UPDATE delivery_attempts a
               SET outcome = CASE WHEN t.live THEN 'in_flight' ELSE 'skipped' END, started_at = now(),
                   finished_at = CASE WHEN t.live THEN NULL ELSE now() END
              FROM target t
             WHERE a.delivery_id = t.delivery_id AND a.attempt = $2 AND a.outcome = 'pending'
            RETURNING t.delivery_id, t.live
        )
        UPDATE deliveries d
           SET lease_until = CASE WHEN m.live THEN now() + make_interval(secs => $4) END,
               status = CASE WHEN m.live THEN d.status ELSE 'cancelled' END,
               code_ciphertext = CASE WHEN m.live THEN d.code_ciphertext END,
               next_attempt_at = CASE WHEN m.live THEN d.next_attempt_at END,
               updated_at = now()
          FROM marked m WHERE d.delivery_id = m.delivery_id
        RETURNING d.*, m.live
        """,
        claim.delivery_id,
        claim.attempt,
        claim.lease_until,
        lease_s,
    )


async def record_success(conn: Connection, delivery_id: uuid.UUID, attempt: int, result: SendResult) -> bool:
    """A message the provider took. True: the delivery's first success — its attempt `succeeded`, the
    delivery `sent` (also when the order was cancelled during the send: it did go out; and when the
    claim had lapsed and the recovery job queued it again: nothing must send it a second time), and
    claims of it not yet started are `skipped`. False: another attempt of the same message was
    recorded as succeeded first (same idempotency key: same send round and channel), so this one is a
    `repeat` and nothing else changes. Recordings of
    one delivery take turns on its row lock; the statement after the lock sees the one before it."""
    await lock_delivery(conn, delivery_id)
    first: bool = await conn.fetchval(
        """
        WITH earlier AS (
            SELECT EXISTS (SELECT 1 FROM delivery_attempts o JOIN delivery_attempts a
                                ON a.delivery_id = $1 AND a.attempt = $2
                            WHERE o.idempotency_key = a.idempotency_key AND o.attempt <> $2
                              AND o.outcome = 'succeeded') AS taken
        ), finished AS (
            UPDATE delivery_attempts a
               SET outcome = CASE WHEN e.taken THEN 'repeat' ELSE 'succeeded' END, finished_at = now(),
                   reason_code = NULL, retryable = NULL, provider_message_id = $3, provider_response = $4
              FROM earlier e
             WHERE a.delivery_id = $1 AND a.attempt = $2
        ), unstarted AS (
            UPDATE delivery_attempts SET outcome = 'skipped', finished_at = now()
             WHERE delivery_id = $1 AND attempt > $2 AND outcome = 'pending'
               AND NOT (SELECT taken FROM earlier)
        ), sent AS (
            UPDATE deliveries
               SET status = 'sent', sent_at = now(), lease_until = NULL, next_attempt_at = NULL,
                   last_reason_code = NULL, updated_at = now()
             WHERE delivery_id = $1 AND status IN ('sending', 'queued', 'cancelled')
               AND NOT (SELECT taken FROM earlier)
        )
        SELECT NOT taken FROM earlier
        """,
        delivery_id,
        attempt,
        result.provider_message_id,
        result.response,
    )
    return first


async def lock_delivery(conn: Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    """The row as it is now, locked for the few statements that follow: recording a failed attempt
    (a cancellation committed during the send is seen here, and one arriving now waits a moment), or
    support's correction or resend."""
    return await conn.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1 FOR UPDATE", delivery_id)


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


async def return_unsent(conn: Connection, unsent: list[Claim], delay_s: float) -> None:
    """Claims a batch stopped before sending (the provider is in trouble, or the batch ran long): never
    sent, so their attempt rows go and they are queued again, due after `delay_s`. One cancelled
    meanwhile keeps its attempt, as `skipped`."""
    await conn.execute(
        """
        WITH unsent AS (
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[])
                       AS u(delivery_id, attempt, lease_until)
        ), returned AS (
            UPDATE deliveries d
               SET status = 'queued', attempts = d.attempts - 1, channel_attempts = d.channel_attempts - 1,
                   lease_until = NULL, next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
              FROM unsent u
             WHERE d.delivery_id = u.delivery_id AND d.attempts = u.attempt AND d.lease_until = u.lease_until
               AND d.status = 'sending'
            RETURNING u.delivery_id, u.attempt
        ), dropped AS (
            DELETE FROM delivery_attempts a USING returned r
             WHERE a.delivery_id = r.delivery_id AND a.attempt = r.attempt AND a.outcome = 'pending'
        )
        UPDATE delivery_attempts a SET outcome = 'skipped', finished_at = now()
          FROM unsent u JOIN deliveries d ON d.delivery_id = u.delivery_id AND d.status = 'cancelled'
         WHERE a.delivery_id = u.delivery_id AND a.attempt = u.attempt AND a.outcome = 'pending'
        """,
        [c.delivery_id for c in unsent],
        [c.attempt for c in unsent],
        [c.lease_until for c in unsent],
        delay_s,
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
    await notify_after_commit(conn, WAKE_CHANNEL, to_channel.value)


async def mark_failed(conn: Connection, delivery_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', failed_at = now(), lease_until = NULL,"
        " next_attempt_at = NULL, last_reason_code = $2, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
        reason,
    )


async def flag_unknown_outcomes(conn: Connection) -> list[asyncpg.Record]:
    """Claims whose worker vanished (lease over, row not locked by a live recording). The one it was
    sending (`in_flight`) has an unknown outcome: flagged, and the delivery queued again with the same
    idempotency key (and Message-ID), so the provider can recognise a message that did leave. Claims
    it never started (`pending`) were never sent: their attempt rows go and they are queued again as
    if never claimed (no attempt spent, nothing to flag)."""
    rows = await conn.fetch(
        """
        WITH lost AS (
            SELECT d.delivery_id, d.attempts, coalesce(a.outcome = 'pending', false) AS never_sent
              FROM deliveries d
              LEFT JOIN delivery_attempts a ON a.delivery_id = d.delivery_id AND a.attempt = d.attempts
             WHERE d.status = 'sending' AND d.lease_until < now()
               FOR UPDATE OF d SKIP LOCKED
        ), flagged AS (
            UPDATE delivery_attempts a
               SET outcome = 'unknown', finished_at = now(), reason_code = 'outcome_unknown',
                   retryable = true,
                   provider_response = 'the sender stopped before recording the outcome'
              FROM lost WHERE a.delivery_id = lost.delivery_id AND a.attempt = lost.attempts
               AND NOT lost.never_sent AND a.outcome IN ('pending', 'in_flight')
        ), dropped AS (
            DELETE FROM delivery_attempts a USING lost
             WHERE a.delivery_id = lost.delivery_id AND a.attempt = lost.attempts
               AND lost.never_sent AND a.outcome = 'pending'
        )
        UPDATE deliveries d
           SET status = 'queued', next_attempt_at = now(), lease_until = NULL,
               attempts = d.attempts - lost.never_sent::int,
               channel_attempts = d.channel_attempts - lost.never_sent::int,
               last_reason_code = CASE WHEN lost.never_sent THEN d.last_reason_code
                                       ELSE 'outcome_unknown' END,
               updated_at = now()
          FROM lost WHERE d.delivery_id = lost.delivery_id
        RETURNING d.delivery_id, d.order_id, d.channel, lost.never_sent
        """
    )
    for channel in {r["channel"] for r in rows}:
        await notify_after_commit(conn, WAKE_CHANNEL, channel)
    return rows


async def purge_held_codes(conn: Connection, retention_days: int) -> int:
    result = await conn.execute(
        "UPDATE deliveries SET code_ciphertext = NULL"
        " WHERE code_ciphertext IS NOT NULL AND status = 'sent'"
        " AND sent_at < now() - make_interval(days => $1)",
        retention_days,
    )
    return int(result.split()[-1])


async def release_cancelled(conn: Connection, delivery_id: uuid.UUID) -> None:
    """A delivery whose order was cancelled during its last send: nothing follows that send."""
    await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, next_attempt_at = NULL,"
        " code_ciphertext = NULL, updated_at = now() WHERE delivery_id = $1",
        delivery_id,
    )

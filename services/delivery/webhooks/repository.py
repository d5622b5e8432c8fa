"""Every SQL string of the webhooks: registrations, the per-webhook delivery rows the handlers write,
the claims the workers take under a lease and the outcomes they record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis.db import Connection
from chassis.wakeups import notify_after_commit

WAKE_CHANNEL = "orchard_webhook_due"
CHANGED = "webhooks_changed"
"""The payload of a notification on WAKE_CHANNEL saying which topics webhooks want may have changed."""


@dataclass(frozen=True)
class NewDelivery:
    event_id: uuid.UUID
    event_type: str
    aggregate_key: str
    occurred_at: datetime
    body: bytes


async def create(
    conn: Connection,
    webhook_id: uuid.UUID,
    url: str,
    events: Sequence[str],
    description: str | None,
    secret_ciphertext: bytes,
    actor: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO webhooks (webhook_id, url, events, description, secret_ciphertext, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        webhook_id,
        url,
        list(events),
        description,
        secret_ciphertext,
        actor,
    )
    assert row is not None
    return row


async def get(conn: Connection, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM webhooks WHERE webhook_id = $1", webhook_id)


async def list_all(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT w.*,
               (SELECT count(*) FROM webhook_deliveries d
                 WHERE d.webhook_id = w.webhook_id AND d.status IN ('pending', 'sending')) AS pending
          FROM webhooks w ORDER BY w.created_at, w.webhook_id
        """
    )


async def delete(conn: Connection, webhook_id: uuid.UUID) -> bool:
    deleted = await conn.fetchval("DELETE FROM webhooks WHERE webhook_id = $1 RETURNING true", webhook_id)
    return deleted is True


async def rotate_secret(
    conn: Connection, webhook_id: uuid.UUID, new_ciphertext: bytes, overlap_s: float
) -> asyncpg.Record | None:
    """The current secret keeps signing next to the new one for `overlap_s` seconds."""
    return await conn.fetchrow(
        """
        UPDATE webhooks
           SET previous_secret_ciphertext = secret_ciphertext, secret_ciphertext = $2,
               previous_secret_until = now() + make_interval(secs => $3), updated_at = now()
         WHERE webhook_id = $1 RETURNING *
        """,
        webhook_id,
        new_ciphertext,
        overlap_s,
    )


async def set_enabled(
    conn: Connection, webhook_id: uuid.UUID, enabled: bool, reason: str | None
) -> asyncpg.Record | None:
    """Enabling starts the failure clock afresh; rows left pending while disabled are sent again."""
    return await conn.fetchrow(
        """
        UPDATE webhooks
           SET enabled = $2, updated_at = now(),
               disabled_at = CASE WHEN $2 THEN NULL ELSE now() END,
               disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
               failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END
         WHERE webhook_id = $1 RETURNING *
        """,
        webhook_id,
        enabled,
        reason,
    )


async def announce_change(conn: Connection) -> None:
    await notify_after_commit(conn, WAKE_CHANNEL, CHANGED)


async def topics_in_use(conn: Connection) -> set[str]:
    rows = await conn.fetch("SELECT DISTINCT unnest(events) AS topic FROM webhooks WHERE enabled")
    return {r["topic"] for r in rows}


async def record_events(conn: Connection, topic: str, events: Sequence[NewDelivery]) -> int:
    """One pending row per event and per enabled webhook that wants the topic (an event already
    recorded for a webhook is left as it is); wakes the workers when anything was added."""
    added = await conn.fetchval(
        """
        WITH e AS (
            SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])
                     WITH ORDINALITY AS e(event_id, event_type, aggregate_key, occurred_at, body, n)
        ), added AS (
            INSERT INTO webhook_deliveries
                   (webhook_id, event_id, event_type, aggregate_key, occurred_at, body)
            SELECT w.webhook_id, e.event_id, e.event_type, e.aggregate_key, e.occurred_at, e.body
              FROM e CROSS JOIN webhooks w
             WHERE w.enabled AND w.events @> ARRAY[$1::text]
             ORDER BY w.webhook_id, e.n
            ON CONFLICT (webhook_id, event_id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM added
        """,
        topic,
        [e.event_id for e in events],
        [e.event_type for e in events],
        [e.aggregate_key for e in events],
        [e.occurred_at for e in events],
        [e.body for e in events],
    )
    if added:
        await notify_after_commit(conn, WAKE_CHANNEL)
    return int(added or 0)


async def record_ping(conn: Connection, webhook_id: uuid.UUID, event: NewDelivery) -> None:
    await conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, aggregate_key, occurred_at, body)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        webhook_id,
        event.event_id,
        event.event_type,
        event.aggregate_key,
        event.occurred_at,
        event.body,
    )
    await notify_after_commit(conn, WAKE_CHANNEL)


async def claim_due(
    conn: Connection, lease_s: float, per_webhook: int, limit: int, skip: Sequence[uuid.UUID] = ()
) -> list[asyncpg.Record]:
    """Up to `limit` due rows of enabled webhooks, at most `per_webhook` sending at once for any one
    webhook (counting live claims of every replica), never a row while an earlier row of the same
    webhook and aggregate key is still open. A row whose claim lapsed (its worker died) is due again.
    Claims of all replicas take turns on one transaction-scoped advisory lock, so the per-webhook
    limit holds across them. `skip`: webhooks this process already has enough of in hand."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.webhook-claims'))")
        return await conn.fetch(
            """
            WITH live AS (
                SELECT webhook_id, count(*) AS n FROM webhook_deliveries
                 WHERE status = 'sending' AND lease_until >= now() GROUP BY webhook_id
            ), chosen AS (
                SELECT c.seq
                  FROM webhooks w
                  LEFT JOIN live ON live.webhook_id = w.webhook_id
                 CROSS JOIN LATERAL (
                    SELECT d.seq, row_number() OVER (ORDER BY d.seq) AS n FROM webhook_deliveries d
                     WHERE d.webhook_id = w.webhook_id
                       AND ((d.status = 'pending' AND d.next_attempt_at <= now())
                            OR (d.status = 'sending' AND d.lease_until < now()))
                       AND NOT EXISTS (
                            SELECT 1 FROM webhook_deliveries e
                             WHERE e.webhook_id = d.webhook_id AND e.aggregate_key = d.aggregate_key
                               AND e.seq < d.seq AND e.status IN ('pending', 'sending'))
                     ORDER BY d.seq
                     LIMIT $2
                 ) c
                 WHERE w.enabled AND NOT (w.webhook_id = ANY($4::uuid[]))
                   AND c.n <= $2 - coalesce(live.n, 0)
                 ORDER BY c.n, c.seq
                 LIMIT $3
            )
            UPDATE webhook_deliveries d
               SET status = 'sending', attempts = d.attempts + 1, last_attempt_at = now(),
                   lease_until = now() + make_interval(secs => $1)
              FROM chosen, webhooks w
             WHERE d.seq = chosen.seq AND w.webhook_id = d.webhook_id
               AND (d.status = 'pending' OR (d.status = 'sending' AND d.lease_until < now()))
            RETURNING d.seq, d.webhook_id, d.event_id, d.event_type, d.body, d.attempts, d.lease_until,
                      w.url, w.secret_ciphertext, w.previous_secret_ciphertext,
                      (w.previous_secret_until > now()) AS previous_signs
            """,
            lease_s,
            per_webhook,
            limit,
            list(skip),
        )


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None


def _claimed(claim: asyncpg.Record) -> tuple[int, int, datetime]:
    """A claim as the statements recording its outcome find it: its row, attempt and lease ($1-$3)."""
    return claim["seq"], claim["attempts"], claim["lease_until"]


async def record_success(conn: Connection, claim: asyncpg.Record, outcome: Outcome) -> bool:
    """The row is `delivered` (for good: no claim takes it again) and the webhook no longer failing.
    False: the claim was void (it lapsed and another claim took the row)."""
    done = await conn.fetchval(
        """
        UPDATE webhook_deliveries
           SET status = 'delivered', delivered_at = now(), lease_until = NULL,
               last_status_code = $4, last_error = NULL
         WHERE seq = $1 AND status = 'sending' AND attempts = $2 AND lease_until = $3
        RETURNING true
        """,
        *_claimed(claim),
        outcome.status_code,
    )
    await conn.execute(
        "UPDATE webhooks SET failing_since = NULL WHERE webhook_id = $1 AND failing_since IS NOT NULL",
        claim["webhook_id"],
    )
    return done is True


async def record_failure(
    conn: Connection, claim: asyncpg.Record, outcome: Outcome, retry_in_s: float
) -> asyncpg.Record | None:
    """The row is due again after `retry_in_s`; the webhook as it is now, locked (its failure clock
    started if it was not running), or None when the claim was void."""
    done = await conn.fetchval(
        """
        UPDATE webhook_deliveries
           SET status = 'pending', lease_until = NULL, last_status_code = $4, last_error = $5,
               next_attempt_at = now() + make_interval(secs => $6)
         WHERE seq = $1 AND status = 'sending' AND attempts = $2 AND lease_until = $3
        RETURNING true
        """,
        *_claimed(claim),
        outcome.status_code,
        outcome.error,
        retry_in_s,
    )
    if done is not True:
        return None
    return await conn.fetchrow(
        "UPDATE webhooks SET failing_since = coalesce(failing_since, now())"
        " WHERE webhook_id = $1 RETURNING *, now() AS now",
        claim["webhook_id"],
    )


async def deliveries(
    conn: Connection, webhook_id: uuid.UUID, limit: int, before_seq: int | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT seq, event_id, event_type, aggregate_key, occurred_at, status, attempts, replays,
               next_attempt_at, last_status_code, last_error, last_attempt_at, delivered_at, created_at
          FROM webhook_deliveries
         WHERE webhook_id = $1 AND ($3::bigint IS NULL OR seq < $3)
         ORDER BY seq DESC LIMIT $2
        """,
        webhook_id,
        limit,
        before_seq,
    )


async def replay(conn: Connection, webhook_id: uuid.UUID, since: datetime) -> int:
    """Delivered events of the webhook that occurred at or after `since` are sent again, in order."""
    result = await conn.execute(
        """
        UPDATE webhook_deliveries
           SET status = 'pending', next_attempt_at = now(), replays = replays + 1, delivered_at = NULL
         WHERE webhook_id = $1 AND occurred_at >= $2 AND status = 'delivered'
        """,
        webhook_id,
        since,
    )
    await notify_after_commit(conn, WAKE_CHANNEL)
    return int(result.split()[-1])


async def purge_delivered(conn: Connection, retention_days: int) -> int:
    result = await conn.execute(
        "DELETE FROM webhook_deliveries WHERE status = 'delivered'"
        " AND delivered_at < now() - make_interval(days => $1)",
        retention_days,
    )
    return int(result.split()[-1])

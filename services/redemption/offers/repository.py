"""Offers, their slots, one-time code challenges and member PINs (SQL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from chassis.db import Connection
from chassis.rows import from_row
from services.redemption.lifecycle import CatalogueStatus
from services.redemption.offers.domain import (
    MemberLimitReached,
    MemberSegments,
    Offer,
    OfferCapReached,
    OfferValidation,
    OtpChallenge,
    PinState,
)


def _offer(row: Any) -> Offer:
    return from_row(
        Offer,
        row,
        validation_method=OfferValidation(row["validation_method"]),
        eligible_tiers=tuple(row["eligible_tiers"]),
        eligible_segments=tuple(row["eligible_segments"]),
        status=CatalogueStatus(row["status"]),
    )


def _terms(offer: Offer) -> tuple[Any, ...]:
    """The columns an edit may change, in the order both insert and update write them."""
    return (
        offer.title,
        offer.description,
        offer.valid_from,
        offer.valid_until,
        list(offer.eligible_tiers),
        list(offer.eligible_segments),
        offer.limit_per_member,
        offer.total_cap,
    )


async def insert_offer(conn: Connection, offer: Offer, *, created_by: str) -> bool:
    status = await conn.execute(
        """
        INSERT INTO offers (offer_id, partner_id, title, description, valid_from, valid_until,
                            eligible_tiers, eligible_segments, limit_per_member, total_cap,
                            validation_method, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (offer_id) DO NOTHING
        """,
        offer.offer_id,
        offer.partner_id,
        *_terms(offer),
        str(offer.validation_method),
        created_by,
    )
    return status.endswith(" 1")


async def get_offer(conn: Connection, offer_id: str) -> Offer | None:
    row = await conn.fetchrow("SELECT * FROM offers WHERE offer_id = $1", offer_id)
    return _offer(row) if row else None


async def lock_offer(conn: Connection, offer_id: str) -> Offer | None:
    row = await conn.fetchrow("SELECT * FROM offers WHERE offer_id = $1 FOR UPDATE", offer_id)
    return _offer(row) if row else None


async def update_offer(conn: Connection, offer: Offer) -> None:
    """Write what can change of an offer: its terms and its status."""
    await conn.execute(
        """
        UPDATE offers SET title = $2, description = $3, valid_from = $4, valid_until = $5,
                          eligible_tiers = $6, eligible_segments = $7, limit_per_member = $8,
                          total_cap = $9, status = $10, updated_at = now()
         WHERE offer_id = $1
        """,
        offer.offer_id,
        *_terms(offer),
        offer.status.value,
    )


async def list_offers(
    conn: Connection,
    *,
    partner_id: str | None,
    open_at: datetime | None,
    limit: int,
    status: CatalogueStatus | None = None,
) -> list[Offer]:
    """Newest first; `open_at` keeps the active offers valid at that time."""
    clauses: list[str] = []
    args: list[Any] = []
    if partner_id is not None:
        args.append(partner_id)
        clauses.append(f"partner_id = ${len(args)}")
    if open_at is not None:
        args.append(open_at)
        clauses.append(f"valid_from <= ${len(args)} AND valid_until > ${len(args)} AND status = 'active'")
    if status is not None:
        args.append(status.value)
        clauses.append(f"status = ${len(args)}")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    args.append(limit)
    rows = await conn.fetch(f"SELECT * FROM offers{where} ORDER BY created_at DESC LIMIT ${len(args)}", *args)  # noqa: S608 -- WHERE built from fixed fragments; values are bind parameters
    return [_offer(r) for r in rows]


async def take_slot(conn: Connection, offer: Offer, member_id: str) -> None:
    """Hold one redemption slot for the member, or raise which limit is reached. Both limits are
    conditional updates on rows Postgres locks, so concurrent redemptions cannot overshoot them; the
    caller runs this in a savepoint so a refusal undoes the half taken."""
    if offer.limit_per_member is not None:
        row = await conn.fetchrow(
            """
            INSERT INTO offer_member_usage (offer_id, member_id, used) VALUES ($1, $2, 1)
            ON CONFLICT (offer_id, member_id) DO UPDATE SET used = offer_member_usage.used + 1
             WHERE offer_member_usage.used < $3
            RETURNING used
            """,
            offer.offer_id,
            member_id,
            offer.limit_per_member,
        )
        if row is None:
            raise MemberLimitReached(
                f"the member has used offer {offer.offer_id} {offer.limit_per_member} time(s)"
            )
    row = await conn.fetchrow(
        "UPDATE offers SET used = used + 1 WHERE offer_id = $1 AND (total_cap IS NULL OR used < total_cap)"
        " RETURNING used",
        offer.offer_id,
    )
    if row is None:
        raise OfferCapReached(f"offer {offer.offer_id} has reached its cap of {offer.total_cap}")


async def release_slot(conn: Connection, record_id: uuid.UUID) -> bool:
    """Give back the slot a failed redemption held, exactly once."""
    row = await conn.fetchrow(
        "UPDATE offer_redemptions SET holds_slot = false WHERE record_id = $1 AND holds_slot"
        " RETURNING offer_id, member_id",
        record_id,
    )
    if row is None:
        return False
    await conn.execute("UPDATE offers SET used = used - 1 WHERE offer_id = $1", row["offer_id"])
    await conn.execute(
        "UPDATE offer_member_usage SET used = used - 1 WHERE offer_id = $1 AND member_id = $2",
        row["offer_id"],
        row["member_id"],
    )
    return True


async def insert_offer_redemption(
    conn: Connection,
    *,
    record_id: uuid.UUID,
    offer_id: str,
    partner_id: str,
    member_id: str,
    idempotency_key: str | None,
    holds_slot: bool,
    received_at: datetime,
    claimed_redeemed_at: datetime | None,
    failure_detail: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO offer_redemptions
            (record_id, offer_id, partner_id, member_id, idempotency_key, holds_slot, received_at,
             claimed_redeemed_at, failure_detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        record_id,
        offer_id,
        partner_id,
        member_id,
        idempotency_key,
        holds_slot,
        received_at,
        claimed_redeemed_at,
        failure_detail,
    )


async def claimed_time_of(conn: Connection, record_id: uuid.UUID) -> datetime | None:
    value = await conn.fetchval(
        "SELECT claimed_redeemed_at FROM offer_redemptions WHERE record_id = $1", record_id
    )
    return value if isinstance(value, datetime) else None


async def find_by_idempotency_key(conn: Connection, partner_id: str, key: str) -> uuid.UUID | None:
    value = await conn.fetchval(
        "SELECT record_id FROM offer_redemptions WHERE partner_id = $1 AND idempotency_key = $2",
        partner_id,
        key,
    )
    return value if isinstance(value, uuid.UUID) else None


async def lock_offer_redemption(conn: Connection, record_id: uuid.UUID) -> Any:
    return await conn.fetchrow("SELECT * FROM offer_redemptions WHERE record_id = $1 FOR UPDATE", record_id)


async def insert_challenge(conn: Connection, challenge: OtpChallenge) -> None:
    await conn.execute(
        "INSERT INTO offer_otp_challenges (record_id, code_hash, expires_at) VALUES ($1, $2, $3)",
        challenge.record_id,
        challenge.code_hash,
        challenge.expires_at,
    )


async def lock_challenge(conn: Connection, record_id: uuid.UUID) -> OtpChallenge | None:
    row = await conn.fetchrow("SELECT * FROM offer_otp_challenges WHERE record_id = $1 FOR UPDATE", record_id)
    if row is None:
        return None
    return from_row(OtpChallenge, row)


async def save_challenge(conn: Connection, challenge: OtpChallenge) -> None:
    await conn.execute(
        "UPDATE offer_otp_challenges SET attempts = $2, status = $3 WHERE record_id = $1",
        challenge.record_id,
        challenge.attempts,
        challenge.status,
    )


async def expired_challenges(conn: Connection, limit: int) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """
        SELECT record_id FROM offer_otp_challenges WHERE status = 'open' AND expires_at <= now()
        ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [r["record_id"] for r in rows]


async def set_pin(conn: Connection, member_id: str, pin_hash: str) -> None:
    """Set or replace the PIN; the member's own change also clears any lock and the lockout count."""
    await conn.execute(
        """
        INSERT INTO member_pins (member_id, pin_hash) VALUES ($1, $2)
        ON CONFLICT (member_id) DO UPDATE
           SET pin_hash = EXCLUDED.pin_hash, failed_attempts = 0, locked_until = NULL, lockouts = 0,
               updated_at = now()
        """,
        member_id,
        pin_hash,
    )


async def unlock_pin(conn: Connection, member_id: str) -> bool:
    """Clear the lock and the lockout count of a member's PIN; False when the member has no PIN."""
    status = await conn.execute(
        "UPDATE member_pins SET failed_attempts = 0, locked_until = NULL, lockouts = 0, updated_at = now()"
        " WHERE member_id = $1",
        member_id,
    )
    return status.endswith(" 1")


async def lock_pin(conn: Connection, member_id: str) -> tuple[str, PinState] | None:
    row = await conn.fetchrow("SELECT * FROM member_pins WHERE member_id = $1 FOR UPDATE", member_id)
    if row is None:
        return None
    return row["pin_hash"], from_row(PinState, row)


async def save_pin_state(conn: Connection, member_id: str, state: PinState) -> None:
    await conn.execute(
        "UPDATE member_pins SET failed_attempts = $2, locked_until = $3, lockouts = $4, updated_at = now()"
        " WHERE member_id = $1",
        member_id,
        state.failed_attempts,
        state.locked_until,
        state.lockouts,
    )


async def get_member_segments(conn: Connection, member_id: str) -> MemberSegments | None:
    row = await conn.fetchrow("SELECT * FROM member_segments WHERE member_id = $1", member_id)
    if row is None:
        return None
    return from_row(MemberSegments, row, segments=tuple(row["segments"]))


async def set_member_segments(conn: Connection, segments: MemberSegments, *, updated_by: str) -> None:
    await conn.execute(
        """
        INSERT INTO member_segments (member_id, tier, segments, updated_by) VALUES ($1, $2, $3, $4)
        ON CONFLICT (member_id) DO UPDATE
           SET tier = EXCLUDED.tier, segments = EXCLUDED.segments, updated_by = EXCLUDED.updated_by,
               updated_at = now()
        """,
        segments.member_id,
        segments.tier,
        list(segments.segments),
        updated_by,
    )


async def take_rate_limit_hit(
    conn: Connection, *, scope: str, subject: str, limit: int, window_s: int
) -> float | None:
    """Count one hit in the subject's current fixed window (by the database's clock, so every replica
    agrees) unless the window already holds `limit`; then nothing is counted and the answer is the
    seconds until the window ends. None: the hit was counted. Inside a transaction the window row stays
    locked until it ends, and a rollback gives the hit back."""
    row = await conn.fetchrow(
        """
        WITH win AS (
            SELECT to_timestamp(floor(extract(epoch FROM now())::float8 / $4::float8) * $4::float8) AS start
        ), hit AS (
            INSERT INTO rate_limit_windows AS w (scope, subject, window_start, hits)
            SELECT $1, $2, win.start, 1 FROM win
            ON CONFLICT (scope, subject, window_start)
            DO UPDATE SET hits = w.hits + 1 WHERE w.hits < $3::integer
            RETURNING hits
        )
        SELECT (SELECT hits FROM hit) AS hits,
               extract(epoch FROM (win.start + make_interval(secs => $4::float8)) - now())::float8 AS left_s,
               win.start AS start
          FROM win
        """,
        scope,
        subject,
        limit,
        float(window_s),
    )
    assert row is not None
    if row["hits"] is None:
        return max(float(row["left_s"]), 0.0)
    if row["hits"] == 1:
        # A new window: the subject's older ones are spent.
        await conn.execute(
            "DELETE FROM rate_limit_windows WHERE scope = $1 AND subject = $2 AND window_start < $3",
            scope,
            subject,
            row["start"],
        )
    return None

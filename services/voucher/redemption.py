"""Partner redemption: the code row is locked for the decision, so concurrent redemptions of one code
queue up and the value can never be exceeded (the CHECK on remaining_value backs this up)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.money import money_text
from contracts.vouchers import CodeStatus, VoucherRedeemed, VoucherRedemptionRefused, VoucherStatusChanged

from .crypto import CodeVault
from .domain import CodeForRedemption, RedemptionRefused, Refusal, decide_redemption
from .events import publish


def _answer(row: asyncpg.Record | dict[str, Any], *, replayed: bool) -> dict[str, Any]:
    remaining = row["remaining_value"]
    return {
        "redemption_id": row["redemption_id"],
        "code_id": row["code_id"],
        "campaign_id": row["campaign_id"],
        "amount": money_text(row["amount"], row["currency"]),
        "remaining_value": money_text(remaining, row["currency"]),
        "currency": row["currency"],
        "partial": remaining > 0,
        "status": "partially_redeemed" if remaining > 0 else "redeemed",
        "test": row["test"],
        "redeemed_at": row["redeemed_at"],
        "replayed": replayed,
    }


async def _previous(conn: Connection, partner_id: str, key: str, lookup_hash: bytes) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT r.*, c.lookup_hash FROM redemptions r JOIN codes c USING (code_id)"
        " WHERE r.partner_id = $1 AND r.idempotency_key = $2",
        partner_id,
        key,
    )
    if row is None:
        return None
    if bytes(row["lookup_hash"]) != lookup_hash:
        raise RedemptionRefused(
            Refusal.IDEMPOTENCY_KEY_REUSED, "this idempotency key was used for another code"
        )
    return _answer(row, replayed=True)


async def redeem(
    conn: Connection,
    vault: CodeVault,
    *,
    partner_id: str,
    code: str,
    amount: Decimal | None,
    channel: str,
    location: str | None,
    idempotency_key: str,
    test_mode: bool,
) -> dict[str, Any]:
    lookup_hash = vault.lookup_hash(code)
    previous = await _previous(conn, partner_id, idempotency_key, lookup_hash)
    if previous is not None:
        return previous
    row = await conn.fetchrow(
        """
        SELECT c.code_id, c.campaign_id, c.status, c.test, c.value, c.remaining_value, c.expires_at,
               c.order_id, c.member_id, k.partner_ids, k.allow_partial, k.currency
          FROM codes c JOIN campaigns k USING (campaign_id)
         WHERE c.lookup_hash = $1
           FOR UPDATE OF c
        """,
        lookup_hash,
    )
    if row is None:
        raise RedemptionRefused(Refusal.UNKNOWN_CODE, "no such code")
    if partner_id not in row["partner_ids"]:
        raise RedemptionRefused(
            Refusal.NOT_YOUR_CAMPAIGN, "this partner may not redeem this campaign's codes"
        )
    # A concurrent request with the same key may have committed while this one waited for the lock.
    previous = await _previous(conn, partner_id, idempotency_key, lookup_hash)
    if previous is not None:
        return previous
    decision = decide_redemption(
        CodeForRedemption(
            status=CodeStatus(row["status"]),
            test=row["test"],
            remaining_value=row["remaining_value"],
            expires_at=row["expires_at"],
        ),
        amount=amount,
        allow_partial=row["allow_partial"],
        test_mode=test_mode,
        now=datetime.now(UTC),
    )
    await conn.execute(
        "UPDATE codes SET remaining_value = $2, status = $3, updated_at = now() WHERE code_id = $1",
        row["code_id"],
        decision.remaining_value,
        str(decision.status),
    )
    redemption_id = uuid.uuid4()
    try:
        saved = await conn.fetchrow(
            """
            INSERT INTO redemptions (redemption_id, partner_id, idempotency_key, code_id, campaign_id, amount,
                                     remaining_value, currency, channel, location, test)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            RETURNING *
            """,
            redemption_id,
            partner_id,
            idempotency_key,
            row["code_id"],
            row["campaign_id"],
            decision.amount,
            decision.remaining_value,
            row["currency"],
            channel,
            location,
            row["test"],
        )
    except asyncpg.UniqueViolationError as exc:
        raise RedemptionRefused(
            Refusal.IDEMPOTENCY_KEY_REUSED, "this idempotency key is being used for another code"
        ) from exc
    assert saved is not None
    await conn.execute(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id, details)"
        " VALUES ($1, 'redeemed', $2, $3, $4, $5,"
        " jsonb_build_object('amount', $6::text, 'remaining_value', $7::text, 'redemption_id', $8::text))",
        row["code_id"],
        str(decision.status),
        row["status"],
        f"partner:{partner_id}",
        row["order_id"],
        str(decision.amount),
        str(decision.remaining_value),
        str(redemption_id),
    )
    redeemed = VoucherRedeemed(
        code_id=row["code_id"],
        campaign_id=row["campaign_id"],
        order_id=row["order_id"],
        member_id=row["member_id"],
        partner_id=partner_id,
        redemption_id=redemption_id,
        amount=decision.amount,
        remaining_value=decision.remaining_value,
        currency=row["currency"],
        channel=channel,
        location=location,
        partial=decision.partial,
        test=row["test"],
    )
    changed = VoucherStatusChanged(
        code_id=row["code_id"],
        campaign_id=row["campaign_id"],
        order_id=row["order_id"],
        status=decision.status,
        previous_status=CodeStatus(row["status"]),
        reason="redeemed",
        expires_at=row["expires_at"],
        remaining_value=decision.remaining_value,
        test=row["test"],
    )
    await publish(conn, [redeemed, changed])
    return _answer(saved, replayed=False)


async def record_refusal(
    conn: Connection,
    vault: CodeVault,
    refusal: RedemptionRefused,
    *,
    partner_id: str,
    code: str,
    amount: Decimal | None,
    channel: str,
    location: str | None,
    test_mode: bool,
) -> uuid.UUID:
    """Put a refused attempt on record. The refusal changed nothing, so this is its own transaction."""
    row = await conn.fetchrow(
        """
        SELECT c.code_id, c.campaign_id, c.order_id, c.member_id, k.partner_ids, k.currency
          FROM codes c JOIN campaigns k USING (campaign_id)
         WHERE c.lookup_hash = $1
        """,
        vault.lookup_hash(code),
    )
    known: dict[str, Any] = {}
    if row is not None:
        known = {"code_id": row["code_id"], "campaign_id": row["campaign_id"], "currency": row["currency"]}
        # Whose code it is stays with the partners allowed to redeem it.
        if partner_id in row["partner_ids"]:
            known |= {"order_id": row["order_id"], "member_id": row["member_id"]}
    refused = VoucherRedemptionRefused(
        attempt_id=uuid.uuid4(),
        partner_id=partner_id,
        reason=str(refusal.reason),
        amount=amount,
        channel=channel,
        location=location,
        test=test_mode,
        **known,
    )
    await publish(conn, [refused])
    return refused.attempt_id

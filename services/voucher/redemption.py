"""Partner redemption: the code row is locked for the decision, so concurrent redemptions of one code
queue up and the value can never be exceeded (the CHECK on remaining_value backs this up)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.models import model_from
from chassis.money import money_text
from contracts.envelope import EventData
from contracts.vouchers import CodeStatus, VoucherRedeemed, VoucherRedemptionRefused, VoucherStatusChanged

from .crypto import CodeVault
from .domain import CodeForRedemption, RedemptionDecision, RedemptionRefused, Refusal, decide_redemption
from .events import publish
from .repository import redemption as repository


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
    row = await repository.redemption_by_key(conn, partner_id, key)
    if row is None:
        return None
    if bytes(row["lookup_hash"]) != lookup_hash:
        raise RedemptionRefused(
            Refusal.IDEMPOTENCY_KEY_REUSED, "this idempotency key was used for another code"
        )
    return _answer(row, replayed=True)


async def _lock_code(conn: Connection, lookup_hash: bytes, partner_id: str) -> asyncpg.Record:
    """The code to redeem, locked, once it is known to be one the partner may redeem."""
    row = await repository.lock_code_to_redeem(conn, lookup_hash)
    if row is None:
        raise RedemptionRefused(Refusal.UNKNOWN_CODE, "no such code")
    if partner_id not in row["partner_ids"]:
        raise RedemptionRefused(
            Refusal.NOT_YOUR_CAMPAIGN, "this partner may not redeem this campaign's codes"
        )
    return row


@dataclass(frozen=True)
class Attempt:
    """A partner's attempt to redeem a code, as it is redeemed or put on record when refused."""

    partner_id: str
    code: str
    amount: Decimal | None
    channel: str
    location: str | None
    test_mode: bool


async def redeem(
    conn: Connection, vault: CodeVault, attempt: Attempt, *, idempotency_key: str
) -> dict[str, Any]:
    partner_id = attempt.partner_id
    lookup_hash = vault.lookup_hash(attempt.code)
    previous = await _previous(conn, partner_id, idempotency_key, lookup_hash)
    if previous is not None:
        return previous
    row = await _lock_code(conn, lookup_hash, partner_id)
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
        amount=attempt.amount,
        allow_partial=row["allow_partial"],
        test_mode=attempt.test_mode,
        now=datetime.now(UTC),
    )
    redemption = repository.Redemption(
        redemption_id=uuid.uuid4(),
        partner_id=partner_id,
        idempotency_key=idempotency_key,
        code_id=row["code_id"],
        campaign_id=row["campaign_id"],
        order_id=row["order_id"],
        amount=decision.amount,
        remaining_value=decision.remaining_value,
        status=str(decision.status),
        previous_status=row["status"],
        currency=row["currency"],
        channel=attempt.channel,
        location=attempt.location,
        test=row["test"],
    )
    try:
        saved = await repository.record_redemption(conn, redemption)
    except asyncpg.UniqueViolationError as exc:
        raise RedemptionRefused(
            Refusal.IDEMPOTENCY_KEY_REUSED, "this idempotency key is being used for another code"
        ) from exc
    await publish(conn, _redeemed_events(redemption, decision, row))
    return _answer(saved, replayed=False)


def _redeemed_events(
    redemption: repository.Redemption, decision: RedemptionDecision, code: asyncpg.Record
) -> list[EventData]:
    """`voucher.redeemed` and the code's status change."""
    redeemed = model_from(VoucherRedeemed, redemption, member_id=code["member_id"], partial=decision.partial)
    changed = model_from(
        VoucherStatusChanged,
        redemption,
        status=decision.status,
        previous_status=CodeStatus(code["status"]),
        reason="redeemed",
        expires_at=code["expires_at"],
    )
    return [redeemed, changed]


async def record_refusal(
    conn: Connection, vault: CodeVault, refusal: RedemptionRefused, attempt: Attempt
) -> uuid.UUID:
    """Put a refused attempt on record. The refusal changed nothing, so this is its own transaction."""
    row = await repository.code_of_attempt(conn, vault.lookup_hash(attempt.code))
    known: dict[str, Any] = {}
    if row is not None:
        known = {"code_id": row["code_id"], "campaign_id": row["campaign_id"], "currency": row["currency"]}
        # Whose code it is stays with the partners allowed to redeem it.
        if attempt.partner_id in row["partner_ids"]:
            known |= {"order_id": row["order_id"], "member_id": row["member_id"]}
    refused = model_from(
        VoucherRedemptionRefused,
        attempt,
        attempt_id=uuid.uuid4(),
        reason=str(refusal.reason),
        test=attempt.test_mode,
        **known,
    )
    await publish(conn, [refused])
    return refused.attempt_id

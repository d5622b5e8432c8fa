"""Kafka in for voucher redemptions, refused redemptions and expiries: recorded like offer redemptions."""

from __future__ import annotations

import uuid
from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from chassis.rows import from_attributes
from contracts.envelope import Envelope
from contracts.redemption import RedemptionKind, RedemptionStatus, ValidationMethod
from contracts.topics import Topics
from contracts.vouchers import CodeStatus, VoucherRedeemed, VoucherRedemptionRefused, VoucherStatusChanged
from services.redemption.records.domain import Record
from services.redemption.records.repository import write_record

_EXPIRY_NAMESPACE = uuid.UUID("5b0a8c52-1d3e-4f7b-9a61-2f4c8e0d7a13")


def expiry_record_id(code_id: uuid.UUID) -> uuid.UUID:
    """One expiry record per code, however often the expiry is announced."""
    return uuid.uuid5(_EXPIRY_NAMESPACE, f"expiry:{code_id}")


def _voucher_record(
    env: Envelope[Any], data: VoucherRedeemed | VoucherRedemptionRefused, **outcome: Any
) -> Record:
    """A partner's voucher redemption as a record: what both a redemption and a refusal tell, under the
    same names (who, where, which code and order, how much)."""
    return from_attributes(
        Record,
        data,
        kind=RedemptionKind.VOUCHER,
        redeemed_at=env.occurred_at,
        validation_method=ValidationMethod.VOUCHER_CODE,
        **outcome,
    )


async def on_voucher_redeemed(conn: Connection, env: Envelope[Any]) -> None:
    data: VoucherRedeemed = env.data
    if data.test:  # UAT codes stay out of reports
        return
    record = _voucher_record(env, data, record_id=data.redemption_id, status=RedemptionStatus.SUCCESSFUL)
    await write_record(conn, record, correlation_id=env.correlation_id, causation_id=str(env.event_id))


async def on_voucher_redemption_refused(conn: Connection, env: Envelope[Any]) -> None:
    data: VoucherRedemptionRefused = env.data
    if data.test:
        return
    record = _voucher_record(env, data, record_id=data.attempt_id, status=RedemptionStatus.FAILED)
    await write_record(conn, record, correlation_id=env.correlation_id, causation_id=str(env.event_id))


def _is_reported_expiry(data: VoucherStatusChanged) -> bool:
    """Only expiries become records (issuance, delivery and redemption are recorded otherwise)."""
    return not data.test and data.status is CodeStatus.EXPIRED


async def on_voucher_status_changed(conn: Connection, env: Envelope[Any]) -> None:
    data: VoucherStatusChanged = env.data
    if not _is_reported_expiry(data):
        return
    remaining = data.remaining_value if data.remaining_value and data.remaining_value > 0 else None
    record = Record(
        record_id=expiry_record_id(data.code_id),
        kind=RedemptionKind.VOUCHER,
        status=RedemptionStatus.EXPIRED,
        redeemed_at=env.occurred_at,
        code_id=data.code_id,
        order_id=data.order_id,
        amount=remaining,
        partial=remaining is not None,
        reason=data.reason or "expired",
    )
    await write_record(conn, record, correlation_id=env.correlation_id, causation_id=str(env.event_id))


def record_subscriptions() -> list[Subscription]:
    return [
        Subscription(
            "records-voucher-redeemed", Topics.VOUCHER_REDEEMED, VoucherRedeemed, on_voucher_redeemed
        ),
        Subscription(
            "records-voucher-refused",
            Topics.VOUCHER_REDEMPTION_REFUSED,
            VoucherRedemptionRefused,
            on_voucher_redemption_refused,
        ),
        Subscription(
            "records-voucher-status",
            Topics.VOUCHER_STATUS_CHANGED,
            VoucherStatusChanged,
            on_voucher_status_changed,
            relevant=_is_reported_expiry,
        ),
    ]

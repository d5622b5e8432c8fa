"""Kafka in: points credits and debits, the dashboard's read model and the member audit feed.

Each handler runs inside the consumer's batch transaction with the event's inbox row, so a
redelivered event changes nothing; a retried request (new event, same idempotency key) finds the
entry its key already made and gets the same answer again.
"""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from chassis.rows import from_attributes
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordAccepted
from contracts.orders import OrderStateChanged
from contracts.redemption import RedemptionRecorded
from contracts.support import SupportResendRequested
from contracts.topics import Topics
from contracts.values import RewardType
from contracts.vouchers import AnyVoucherIssued, VoucherIssued, VoucherStatusChanged
from contracts.wallet import EntryType, WalletCreditRequested, WalletDebitRequested, WalletReference

from . import readmodel, readmodel_batch
from .domain import Posting, UnsupportedEntryType, WalletError
from .ledger import Ledger
from .member_audit import append_member_audit

IPA_REASON_CODE = "ipa_allocation"


class WalletHandlers:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def ipa_record_accepted(self, conn: Connection, env: Envelope[IpaRecordAccepted]) -> None:
        data = env.data
        if not _awards_points(data):
            return
        posting = Posting(
            member_id=data.member_id,
            entry_type=EntryType.MILESTONE_AWARD,
            amount=int(data.amount),
            reason_code=IPA_REASON_CODE,
            reason=data.reason,
            actor=f"service:{env.producer}",
            # external_ref is unique per allocation: a repeated record is never a second reward.
            idempotency_key=f"ipa:{data.external_ref}",
            reference=WalletReference(external_ref=data.external_ref),
        )
        details = {"campaign_id": data.campaign_id, **({"batch_id": data.batch_id} if data.batch_id else {})}
        await self.ledger.post(conn, posting, cause=env, audit_details=details, campaign_id=data.campaign_id)

    async def credit_requested(self, conn: Connection, env: Envelope[WalletCreditRequested]) -> None:
        posting = _requested_posting(env.data)
        await self.ledger.post(conn, posting, cause=env, audit_details=_initiated_by(env))

    async def debit_requested(self, conn: Connection, env: Envelope[WalletDebitRequested]) -> None:
        data = env.data
        try:
            if data.entry_type is not EntryType.REDEMPTION:
                raise UnsupportedEntryType(f"{data.entry_type} debits are not taken from requests")
            posting = _requested_posting(data)
            async with conn.transaction():  # a savepoint: a refusal leaves nothing of the attempt behind
                await self.ledger.post(
                    conn, posting, cause=env, enforce_frozen=True, audit_details=_initiated_by(env)
                )
        except WalletError as error:
            await self.ledger.reject_debit(
                conn,
                member_id=data.member_id,
                amount=data.amount,
                idempotency_key=data.idempotency_key,
                reference=data.reference,
                error=error,
                actor=data.requested_by,
                cause=env,
            )

    async def order_state_changed(self, conn: Connection, env: Envelope[OrderStateChanged]) -> None:
        await readmodel.apply_order_state(conn, env.data, env.occurred_at)

    async def voucher_issued(self, conn: Connection, env: Envelope[AnyVoucherIssued]) -> None:
        await readmodel.apply_voucher_issued(conn, env.data, env.occurred_at)

    async def voucher_status_changed(self, conn: Connection, env: Envelope[VoucherStatusChanged]) -> None:
        await readmodel.apply_code_status(conn, env.data, env.occurred_at)

    async def delivery_succeeded(self, conn: Connection, env: Envelope[DeliverySucceeded]) -> None:
        await readmodel.apply_delivery(conn, env.data, env.occurred_at)

    async def delivery_failed(self, conn: Connection, env: Envelope[DeliveryFailed]) -> None:
        await readmodel.apply_delivery(conn, env.data, env.occurred_at)

    async def resend_requested(self, conn: Connection, env: Envelope[SupportResendRequested]) -> None:
        data = env.data
        details: dict[str, Any] = {"order_id": str(data.order_id), "reason": data.reason}
        if data.ticket_id:
            details["ticket_id"] = data.ticket_id
        if data.delivery_id:
            details["delivery_id"] = str(data.delivery_id)
        fact = readmodel.OrderFact(
            data.order_id, data.requested_by, "voucher_resend_requested", env.occurred_at, details
        )
        await fact.record(conn, data.member_id)

    async def redemption_recorded(self, conn: Connection, env: Envelope[RedemptionRecorded]) -> None:
        data = env.data
        details = data.model_dump(mode="json", exclude_none=True, exclude={"member_id", "segment_token"})
        actor = f"partner:{data.partner_id}" if data.partner_id else f"service:{env.producer}"
        action = f"redemption_{data.status.value}"
        if data.member_id is not None:
            await append_member_audit(
                conn,
                member_id=data.member_id,
                actor=actor,
                action=action,
                occurred_at=env.occurred_at,
                details=details,
            )
        elif data.order_id is not None:
            await readmodel.OrderFact(data.order_id, actor, action, env.occurred_at, details).record(conn)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                "ipa-points",
                Topics.IPA_RECORD_ACCEPTED,
                IpaRecordAccepted,
                self.ipa_record_accepted,
                relevant=_awards_points,
            ),
            Subscription(
                "credits", Topics.WALLET_CREDIT_REQUESTED, WalletCreditRequested, self.credit_requested
            ),
            Subscription("debits", Topics.WALLET_DEBIT_REQUESTED, WalletDebitRequested, self.debit_requested),
            # The dashboard's read model: a batch at a time, with the effect of the events in turn.
            Subscription(
                "orders",
                Topics.ORDER_STATE_CHANGED,
                OrderStateChanged,
                self.order_state_changed,
                handle_batch=readmodel_batch.apply_order_states,
            ),
            Subscription(
                "vouchers",
                Topics.VOUCHER_ISSUED,
                VoucherIssued,
                self.voucher_issued,
                handle_batch=readmodel_batch.apply_vouchers_issued,
            ),
            Subscription(
                "voucher-status",
                Topics.VOUCHER_STATUS_CHANGED,
                VoucherStatusChanged,
                self.voucher_status_changed,
                relevant=readmodel.is_members_code,
                handle_batch=readmodel_batch.apply_code_statuses,
            ),
            Subscription(
                "deliveries-ok",
                Topics.DELIVERY_SUCCEEDED,
                DeliverySucceeded,
                self.delivery_succeeded,
                handle_batch=readmodel_batch.apply_deliveries,
            ),
            Subscription(
                "deliveries-failed",
                Topics.DELIVERY_FAILED,
                DeliveryFailed,
                self.delivery_failed,
                handle_batch=readmodel_batch.apply_deliveries,
            ),
            Subscription(
                "resends", Topics.SUPPORT_RESEND_REQUESTED, SupportResendRequested, self.resend_requested
            ),
            Subscription(
                "redemptions", Topics.REDEMPTION_RECORDED, RedemptionRecorded, self.redemption_recorded
            ),
        ]


def _requested_posting(data: WalletCreditRequested | WalletDebitRequested) -> Posting:
    """The posting another service asks for, in its own words (type, reason, who asked, its key)."""
    return from_attributes(Posting, data, actor=data.requested_by)


def _initiated_by(env: Envelope[Any]) -> dict[str, Any]:
    """Support's goodwill credits are support-initiated changes in the member's log."""
    return {"requested_via": env.producer, "support_initiated": env.producer == "support"}


def _awards_points(data: IpaRecordAccepted) -> bool:
    """Voucher rewards became orders; the dashboard learns of them from order events."""
    return data.reward_type is RewardType.POINTS

"""One valid payload per topic, so every contract can be exercised end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from chassis.testing import delivery_outcome, order_state_changed, voucher_issued, voucher_status_changed
from contracts.approvals import ApprovalDecided, ApprovalDecision, ApprovalRequested
from contracts.campaigns import CampaignActivity, CampaignActivityKind
from contracts.delivery import DeliveryMessageRequested, DeliveryRequested
from contracts.envelope import EventData
from contracts.ipa import FieldError, IpaRecordAccepted, IpaRecordRejected, IpaRecordSubmitted
from contracts.members import MemberUpserted
from contracts.orders import FulfilmentStatus, OrderCancelRequested, OrderCreateRequested, OrderState
from contracts.redemption import RedemptionRecorded
from contracts.support import SupportResendRequested, SupportSlaBreached
from contracts.topics import Topics
from contracts.vouchers import (
    CampaignChanged,
    CodeStatus,
    ExpiryPolicy,
    VoucherIssueFailed,
    VoucherRedeemed,
    VoucherRedemptionRefused,
    VoucherStockLow,
)
from contracts.wallet import (
    WalletCreditRequested,
    WalletDebitRejected,
    WalletDebitRequested,
    WalletReference,
    WalletTransactionRecorded,
)

ORDER_ID = uuid.UUID("0b6f5c1e-6a53-4d43-9e0a-2f8c3b1d7a10")
CODE_ID = uuid.UUID("5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
REDEMPTION_ID = uuid.UUID("7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
WHEN = datetime(2026, 3, 31, 9, 30, tzinfo=UTC)
APPROVAL_ID = uuid.UUID("3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f")


def sample_payloads() -> dict[str, EventData]:
    reference = WalletReference(order_id=ORDER_ID, booking_id="BK-7F3K9Q2M4T", redemption_id=REDEMPTION_ID)
    # One storefront debit, asked for, recorded or refused; one wallet adjustment, asked for and decided.
    debit: dict[str, Any] = {
        "member_id": "E1001",
        "amount": "1500",
        "idempotency_key": f"debit:{REDEMPTION_ID}",
    }
    approval: dict[str, Any] = {
        "approval_id": APPROVAL_ID,
        "service": "wallet",
        "kind": "wallet_adjustment",
        "subject_id": "E1001",
        "summary": "manual adjustment of 25000 points for member E1001",
        "maker": "finance:fiona",
    }
    # One member's allocation, submitted and accepted; the member as the HR system describes them.
    member: dict[str, Any] = {
        "member_id": "E1001",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+447700900123",
    }
    allocation: dict[str, Any] = {
        "external_ref": "hr-2026-q1-0001",
        "member_id": "E1001",
        "campaign_id": "spring-thanks",
        "reward_type": "voucher",
        "amount": "25.00",
        "currency": "EUR",
    }
    # One partner's redemption of the order's code, done or refused.
    redemption: dict[str, Any] = {
        "code_id": CODE_ID,
        "campaign_id": "spring-thanks",
        "order_id": ORDER_ID,
        "partner_id": "bean-and-leaf",
        "amount": "10.00",
        "currency": "EUR",
        "channel": "in_store",
    }
    samples: dict[Topics, EventData] = {
        Topics.IPA_RECORD_SUBMITTED: IpaRecordSubmitted(
            **(allocation | member), batch_id="batch-1", channel="email", reason="Q1 milestone"
        ),
        Topics.IPA_RECORD_ACCEPTED: IpaRecordAccepted(**allocation, order_id=ORDER_ID),
        Topics.IPA_RECORD_REJECTED: IpaRecordRejected(
            external_ref="hr-2026-q1-0002",
            errors=[FieldError(field="phone", code="invalid_phone", message="not an E.164 number")],
        ),
        Topics.ORDER_STATE_CHANGED: order_state_changed(
            ORDER_ID,
            OrderState.PENDING,
            booking_id="BK-7F3K9Q2M4T",
            member_id="E1001",
            campaign_id="spring-thanks",
            external_ref="hr-2026-q1-0001",
            fulfilment_status=FulfilmentStatus.AWAITING_VOUCHER,
        ),
        Topics.ORDER_CANCEL_REQUESTED: OrderCancelRequested(external_ref="hr-2026-q1-0001", reason="left"),
        Topics.ORDER_CREATE_REQUESTED: OrderCreateRequested(
            redemption_id=REDEMPTION_ID,
            idempotency_key=f"storefront:{REDEMPTION_ID}",
            member_id="E1001",
            campaign_id="spring-thanks",
            reward_id="reward-coffee",
            points="1500",
            email="ada@example.com",
        ),
        Topics.CAMPAIGN_CHANGED: CampaignChanged(
            campaign_id="spring-thanks",
            version=3,
            name="Spring thanks",
            reward_type="voucher",
            brand="Bean & Leaf",
            face_value="25.00",
            currency="EUR",
            status="active",
            per_record_limit="100.00",
            default_channel="email",
            partner_ids=["bean-and-leaf"],
            expiry_policy=ExpiryPolicy(kind="days_after_issue", days=365),
            budget="100000.00",
        ),
        # The code is QX7M-4T9K-2W8P, sealed for the development key pair.
        Topics.VOUCHER_ISSUED: voucher_issued(
            ORDER_ID, CODE_ID, campaign_id="spring-thanks", face_value="25.00", expires_at=WHEN
        ),
        Topics.VOUCHER_ISSUE_FAILED: VoucherIssueFailed(
            order_id=ORDER_ID, campaign_id="spring-thanks", reason="out_of_stock"
        ),
        Topics.VOUCHER_STOCK_LOW: VoucherStockLow(campaign_id="spring-thanks", available=9, threshold=10),
        Topics.VOUCHER_REDEEMED: VoucherRedeemed(
            **redemption,
            redemption_id=REDEMPTION_ID,
            remaining_value="15.00",
            location="Lisbon, Rua Augusta",
            partial=True,
        ),
        Topics.VOUCHER_REDEMPTION_REFUSED: VoucherRedemptionRefused(
            **redemption, attempt_id=REDEMPTION_ID, reason="code_expired"
        ),
        Topics.VOUCHER_STATUS_CHANGED: voucher_status_changed(
            None,
            CODE_ID,
            CodeStatus.EXPIRED,
            campaign_id="spring-thanks",
            previous_status=CodeStatus.ISSUED,
            remaining_value=None,
        ),
        Topics.DELIVERY_REQUESTED: DeliveryRequested(
            order_id=ORDER_ID,
            booking_id="BK-7F3K9Q2M4T",
            member_id="E1001",
            campaign_id="spring-thanks",
            channel="sms",
            phone="+447700900123",
            locale="en-GB",
        ),
        Topics.DELIVERY_SUCCEEDED: delivery_outcome(ORDER_ID, 1, ok=True, delivery_id=CODE_ID),
        Topics.DELIVERY_FAILED: delivery_outcome(ORDER_ID, 3, ok=False, final=True, delivery_id=CODE_ID),
        Topics.DELIVERY_MESSAGE_REQUESTED: DeliveryMessageRequested(
            message_id=REDEMPTION_ID,
            member_id="E1001",
            channel="email",
            template="ticket_update",
            params={"ticket_id": "T-42"},
        ),
        Topics.WALLET_CREDIT_REQUESTED: WalletCreditRequested(
            member_id="E1001",
            amount="1500",
            idempotency_key=f"refund:{REDEMPTION_ID}",
            entry_type="refund",
            reason_code="order_cancelled",
            reference=reference,
            requested_by="service:redemption",
        ),
        Topics.WALLET_DEBIT_REQUESTED: WalletDebitRequested(
            **debit,
            entry_type="redemption",
            reason_code="storefront",
            reference=reference,
            requested_by="member:E1001",
        ),
        Topics.WALLET_TRANSACTION_RECORDED: WalletTransactionRecorded(
            **debit,
            entry_id=CODE_ID,
            entry_type="redemption",
            direction="debit",
            balance_after="0",
            reference=reference,
        ),
        Topics.WALLET_DEBIT_REJECTED: WalletDebitRejected(**debit, reason="insufficient_points"),
        Topics.SUPPORT_RESEND_REQUESTED: SupportResendRequested(
            order_id=ORDER_ID, ticket_id="T-42", reason="member lost the email", requested_by="agent:sam"
        ),
        Topics.SUPPORT_SLA_BREACHED: SupportSlaBreached(
            ticket_id="T-42",
            kind="breach",
            priority="high",
            category="missing_delivery",
            target="first_response",
            due_at=WHEN,
            breached_at=WHEN,
        ),
        Topics.REDEMPTION_RECORDED: RedemptionRecorded(
            record_id=REDEMPTION_ID,
            kind="offer",
            status="successful",
            redeemed_at=WHEN,
            member_id="E1001",
            segment_token="tier-gold",
            offer_id="offer-9",
            partner_id="bean-and-leaf",
            channel="online",
            validation_method="one_time_code",
        ),
        Topics.APPROVAL_REQUESTED: ApprovalRequested(
            **approval,
            reason="make good",
            requested_at=WHEN,
        ),
        Topics.APPROVAL_DECIDED: ApprovalDecided(
            **approval,
            decision=ApprovalDecision.APPROVED,
            decided_by="approver:paula",
            decided_at=WHEN,
        ),
        Topics.MEMBER_UPSERTED: MemberUpserted(
            **member,
            locale="en-GB",
            preferred_channel="sms",
            opted_out=["points_credited"],
            employment_status="active",
            changed_at=WHEN,
        ),
        Topics.CAMPAIGN_ACTIVITY: CampaignActivity(
            campaign_id="spring-2026",
            kind=CampaignActivityKind.CODES_RECOVERED,
            count=12,
            actor="ops:olga",
            detail="employee left",
        ),
    }
    return {str(name): payload for name, payload in samples.items()}

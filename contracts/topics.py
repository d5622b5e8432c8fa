"""Topic names, so no service types one by hand. Members are `str`s: pass them anywhere a topic
name goes (`Topics.ORDER_STATE_CHANGED == "order.state_changed"`). The registry says who
produces and consumes each one."""

from __future__ import annotations

from enum import StrEnum

DLQ_SUFFIX = ".dlq"


class Topics(StrEnum):
    IPA_RECORD_SUBMITTED = "ipa.record_submitted"
    IPA_RECORD_ACCEPTED = "ipa.record_accepted"
    IPA_RECORD_REJECTED = "ipa.record_rejected"
    ORDER_STATE_CHANGED = "order.state_changed"
    ORDER_CANCEL_REQUESTED = "order.cancel_requested"
    ORDER_CREATE_REQUESTED = "order.create_requested"
    CAMPAIGN_CHANGED = "campaign.changed"
    CAMPAIGN_ACTIVITY = "campaign.activity"
    VOUCHER_ISSUED = "voucher.issued"
    VOUCHER_ISSUE_FAILED = "voucher.issue_failed"
    VOUCHER_STOCK_LOW = "voucher.stock_low"
    VOUCHER_REDEEMED = "voucher.redeemed"
    VOUCHER_REDEMPTION_REFUSED = "voucher.redemption_refused"
    VOUCHER_STATUS_CHANGED = "voucher.status_changed"
    DELIVERY_REQUESTED = "delivery.requested"
    DELIVERY_SUCCEEDED = "delivery.succeeded"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_MESSAGE_REQUESTED = "delivery.message_requested"
    WALLET_CREDIT_REQUESTED = "wallet.credit_requested"
    WALLET_DEBIT_REQUESTED = "wallet.debit_requested"
    WALLET_TRANSACTION_RECORDED = "wallet.transaction_recorded"
    WALLET_DEBIT_REJECTED = "wallet.debit_rejected"
    SUPPORT_RESEND_REQUESTED = "support.resend_requested"
    SUPPORT_SLA_BREACHED = "support.sla_breached"
    REDEMPTION_RECORDED = "redemption.recorded"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    MEMBER_UPSERTED = "member.upserted"

    @property
    def dlq(self) -> str:
        """The dead-letter topic of this topic."""
        return f"{self.value}{DLQ_SUFFIX}"

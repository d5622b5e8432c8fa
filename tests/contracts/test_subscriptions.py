"""Every service's subscriptions, pinned. A subscription's name is its consumer group and its inbox key:
renaming one makes the service read its topic again from the start under a new group, with an inbox
that knows none of the events. Change this table only with a migration plan for that group."""

from __future__ import annotations

import pytest

from chassis.settings import SERVICE_PORTS
from contracts.registry import TOPICS
from deploy.catalog import service_spec

PINNED: dict[str, set[tuple[str, str]]] = {
    "order": {
        ("campaign.changed", "campaigns"),
        ("delivery.failed", "delivery-failed"),
        ("delivery.succeeded", "delivery-succeeded"),
        ("ipa.record_submitted", "ipa-intake"),
        ("order.cancel_requested", "cancel-requests"),
        ("order.create_requested", "storefront-orders"),
        ("voucher.issue_failed", "voucher-issue-failed"),
        ("voucher.issued", "voucher-issued"),
    },
    "voucher": {("order.state_changed", "issuance")},
    "delivery": {
        ("delivery.message_requested", "delivery-messages"),
        ("delivery.requested", "delivery-requests"),
        ("order.state_changed", "delivery-orders"),
        ("support.resend_requested", "delivery-resends"),
        ("support.sla_breached", "delivery-sla"),
        ("voucher.issued", "delivery-vouchers"),
        ("voucher.stock_low", "delivery-stock"),
        ("voucher.status_changed", "delivery-code-statuses"),
        ("approval.requested", "delivery-approvals"),
        ("approval.decided", "delivery-approval-decisions"),
        ("member.upserted", "delivery-members"),
        ("campaign.activity", "delivery-campaign-activity"),
        ("order.state_changed", "member-notices-orders"),
        ("voucher.status_changed", "member-notices-vouchers"),
        ("wallet.transaction_recorded", "member-notices-wallet"),
        ("delivery.failed", "webhooks-delivery-failed"),
        ("delivery.succeeded", "webhooks-delivery-succeeded"),
        ("ipa.record_accepted", "webhooks-ipa-record-accepted"),
        ("ipa.record_rejected", "webhooks-ipa-record-rejected"),
        ("order.state_changed", "webhooks-order-state-changed"),
        ("redemption.recorded", "webhooks-redemption-recorded"),
        ("support.sla_breached", "webhooks-support-sla-breached"),
        ("voucher.issue_failed", "webhooks-voucher-issue-failed"),
        ("voucher.redeemed", "webhooks-voucher-redeemed"),
        ("voucher.status_changed", "webhooks-voucher-status-changed"),
        ("wallet.transaction_recorded", "webhooks-wallet-transaction-recorded"),
    },
    "wallet": {
        ("delivery.failed", "deliveries-failed"),
        ("delivery.succeeded", "deliveries-ok"),
        ("ipa.record_accepted", "ipa-points"),
        ("order.state_changed", "orders"),
        ("redemption.recorded", "redemptions"),
        ("support.resend_requested", "resends"),
        ("voucher.issued", "vouchers"),
        ("voucher.status_changed", "voucher-status"),
        ("wallet.credit_requested", "credits"),
        ("wallet.debit_requested", "debits"),
    },
    "redemption": {
        ("order.state_changed", "storefront-order-state"),
        ("voucher.redeemed", "records-voucher-redeemed"),
        ("voucher.redemption_refused", "records-voucher-refused"),
        ("voucher.status_changed", "records-voucher-status"),
        ("wallet.debit_rejected", "storefront-wallet-rejected"),
        ("wallet.transaction_recorded", "storefront-wallet-recorded"),
    },
    "support": {
        ("delivery.failed", "delivery-failed"),
        ("delivery.succeeded", "delivery-succeeded"),
        ("order.state_changed", "order-state"),
        ("voucher.issued", "voucher-issued"),
        ("voucher.status_changed", "voucher-status"),
        ("wallet.transaction_recorded", "wallet-transactions"),
    },
}


def _subscriptions(service: str) -> set[tuple[str, str]]:
    return {(str(sub.topic), sub.name) for sub in service_spec(service).subscriptions}


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_subscription_names_never_change(service):
    assert _subscriptions(service) == PINNED[service]


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_a_service_reads_exactly_the_topics_the_registry_names_it_a_consumer_of(service):
    registered = {str(topic.name) for topic in TOPICS if service in topic.consumers}

    assert {topic for topic, _ in _subscriptions(service)} == registered

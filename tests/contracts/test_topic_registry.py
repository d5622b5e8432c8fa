from __future__ import annotations

import dataclasses

import pytest

from contracts.envelope import EventData
from contracts.orders import OrderCancelRequested, OrderStateChanged
from contracts.redemption import RedemptionRecorded
from contracts.registry import (
    BY_NAME,
    DEFAULT_RETENTION_MS,
    DLQ_RETENTION_MS,
    SERVICES,
    STATUS_TOPICS,
    TOPICS,
    consumed_by,
    for_payload,
    kafka_topics,
    produced_by,
    topic,
)
from contracts.topics import Topics

# Who reads what, as DESIGN.md §2 and the roadmap say.
EXPECTED_CONSUMPTION = {
    "order": {
        "ipa.record_submitted",
        "order.cancel_requested",
        "order.create_requested",
        "campaign.changed",
        "voucher.issued",
        "voucher.issue_failed",
        "delivery.succeeded",
        "delivery.failed",
    },
    "voucher": {"order.state_changed"},
    "delivery": {
        "delivery.requested",
        "voucher.issued",
        "order.state_changed",
        "support.resend_requested",
        "delivery.message_requested",
        "voucher.stock_low",
        "support.sla_breached",
        "approval.requested",  # approvers are told on Slack/Teams
        "approval.decided",
        "member.upserted",  # the member directory
        "campaign.activity",  # posted to the campaign's own Slack/Teams route
        # DESIGN.md §5 "Webhooks": every status topic, for the webhooks that want it.
        *STATUS_TOPICS,
    },
    "wallet": {
        "ipa.record_accepted",
        "wallet.credit_requested",
        "wallet.debit_requested",
        "order.state_changed",
        "voucher.issued",
        "delivery.succeeded",
        "delivery.failed",
        "redemption.recorded",
        "support.resend_requested",
        "voucher.status_changed",
    },
    "redemption": {
        "wallet.transaction_recorded",
        "wallet.debit_rejected",
        "order.state_changed",
        "voucher.redeemed",
        "voucher.redemption_refused",
        "voucher.status_changed",
    },
    "support": {
        "order.state_changed",
        "voucher.issued",
        "delivery.succeeded",
        "delivery.failed",
        "wallet.transaction_recorded",
        "voucher.status_changed",
    },
}


def test_every_topic_name_constant_has_exactly_one_registry_entry() -> None:
    assert [spec.name for spec in TOPICS] == [name.value for name in Topics]
    assert set(BY_NAME) == {str(name) for name in Topics}


def test_topic_name_constants_are_plain_strings_usable_anywhere() -> None:
    assert Topics.ORDER_STATE_CHANGED == "order.state_changed"
    assert f"{Topics.ORDER_STATE_CHANGED}" == "order.state_changed"
    assert Topics.ORDER_STATE_CHANGED.dlq == "order.state_changed.dlq"
    assert topic(Topics.VOUCHER_ISSUED) is BY_NAME["voucher.issued"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_consumes_what_the_design_routes_to_it(service: str) -> None:
    assert {spec.name for spec in consumed_by(service)} == EXPECTED_CONSUMPTION[service]


def test_design_section_five_topics_are_keyed_by_their_aggregate() -> None:
    expected = {
        "ipa.record_submitted": "external_ref",
        "ipa.record_accepted": "external_ref",
        "ipa.record_rejected": "external_ref",
        "order.state_changed": "order_id",
        "order.cancel_requested": "order_id",
        "voucher.issued": "order_id",
        "voucher.issue_failed": "order_id",
        "delivery.succeeded": "order_id",
        "delivery.failed": "order_id",
        "wallet.credit_requested": "member_id",
        "wallet.debit_requested": "member_id",
        "wallet.transaction_recorded": "member_id",
        "wallet.debit_rejected": "member_id",
    }
    assert {name: topic(name).key for name in expected} == expected


def test_key_of_uses_the_aggregate_id(samples: dict[str, EventData]) -> None:
    for spec in TOPICS:
        payload = samples[spec.name]
        expected = getattr(payload, spec.key)
        if expected is None and spec.key_fallback:
            expected = getattr(payload, spec.key_fallback)
        assert spec.key_of(payload) == str(expected)


def test_cancel_request_by_external_ref_is_keyed_by_it() -> None:
    spec = topic(Topics.ORDER_CANCEL_REQUESTED)
    assert spec.key_of(OrderCancelRequested(external_ref="hr-7", reason="left")) == "hr-7"


def test_redemption_without_member_is_keyed_by_its_record(samples: dict[str, EventData]) -> None:
    record = samples[Topics.REDEMPTION_RECORDED]
    assert isinstance(record, RedemptionRecorded)
    anonymous = record.model_copy(update={"member_id": None})
    assert topic(Topics.REDEMPTION_RECORDED).key_of(anonymous) == str(record.record_id)


def test_key_of_refuses_a_payload_of_another_topic(samples: dict[str, EventData]) -> None:
    with pytest.raises(TypeError, match="carries OrderStateChanged"):
        topic(Topics.ORDER_STATE_CHANGED).key_of(samples[Topics.VOUCHER_ISSUED])


def test_a_spec_whose_key_is_not_a_payload_field_is_refused() -> None:
    with pytest.raises(ValueError, match="key field 'orderid'"):
        dataclasses.replace(topic(Topics.ORDER_STATE_CHANGED), key="orderid")


def test_a_spec_with_an_unknown_consumer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown producer or consumer 'billing'"):
        dataclasses.replace(topic(Topics.ORDER_STATE_CHANGED), consumers=("billing",))


def test_unknown_topic_names_are_refused() -> None:
    with pytest.raises(KeyError, match=r"order\.state_change"):
        topic("order.state_change")


def test_each_payload_model_travels_on_one_topic(samples: dict[str, EventData]) -> None:
    assert len({spec.payload for spec in TOPICS}) == len(TOPICS)
    for name, payload in samples.items():
        assert for_payload(payload).name == name
    assert for_payload(OrderStateChanged) is topic(Topics.ORDER_STATE_CHANGED)


def test_producers_are_services_or_the_hris() -> None:
    assert topic(Topics.IPA_RECORD_SUBMITTED).producer == "hris"
    assert {spec.name for spec in produced_by("wallet")} == {
        "wallet.transaction_recorded",
        "wallet.debit_rejected",
        "approval.requested",
        "approval.decided",
        "delivery.message_requested",  # points about to expire
    }
    assert "wallet.credit_requested" in {spec.name for spec in produced_by("support")}


def test_every_topic_gets_a_dead_letter_topic_kept_thirty_days() -> None:
    created = {t.name: t for t in kafka_topics()}
    for spec in TOPICS:
        assert spec.dlq == f"{spec.name}.dlq"
        assert created[spec.dlq].config["retention.ms"] == str(DLQ_RETENTION_MS)
        assert created[spec.name].partitions == spec.partitions
    assert len(created) == 2 * len(TOPICS)


def test_topics_keep_a_week_except_the_compacted_campaign_snapshot() -> None:
    campaigns = topic(Topics.CAMPAIGN_CHANGED)
    assert campaigns.compacted
    assert campaigns.kafka_config()["cleanup.policy"] == "compact"
    others = [spec for spec in TOPICS if spec is not campaigns]
    assert all(spec.retention_ms == DEFAULT_RETENTION_MS and not spec.compacted for spec in others)


def test_bursty_topics_get_more_partitions_than_quiet_ones() -> None:
    assert topic(Topics.IPA_RECORD_SUBMITTED).partitions == 6
    assert topic(Topics.ORDER_STATE_CHANGED).partitions == 6
    assert topic(Topics.VOUCHER_STOCK_LOW).partitions == 3

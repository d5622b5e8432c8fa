"""Rules each payload enforces when it is built, and what may travel where."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from chassis.sealed_codes import CodeOpener, dev_key_pair
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import ContractViolation, Envelope, EventData
from contracts.registry import HRIS, SENSITIVE_TOPICS, TOPICS, topic
from contracts.topics import Topics
from contracts.vouchers import ExpiryPolicy, VoucherIssued, VoucherIssuedV1

CLEAR_CODE = "QX7M-4T9K-2W8P"  # the sample's code (conftest)

CONTACT_FIELDS = {"email", "phone"}
# Intake and requests to send: the order service validates contact details, delivery uses them.
MAY_CARRY_CONTACT = {
    "ipa.record_submitted",
    "order.create_requested",
    "delivery.requested",
    "delivery.message_requested",
    "member.upserted",
}


def _with(samples: dict[str, EventData], name: str, **changes: Any) -> EventData:
    """The topic's sample rebuilt (and so validated) with `changes`."""
    payload = samples[name]
    return type(payload)(**{**payload.model_dump(), **changes})


def test_status_topics_never_carry_contact_details() -> None:
    for spec in TOPICS:
        carried = CONTACT_FIELDS & set(spec.payload.model_fields)
        assert not carried or spec.name in MAY_CARRY_CONTACT, spec.name


def test_every_topic_a_producer_sends_codes_or_contact_details_on_is_sensitive() -> None:
    # Their outbox rows are emptied once published (chassis.outbox).
    produced_by_services = {name for name in MAY_CARRY_CONTACT if topic(name).producer != HRIS}
    assert produced_by_services | {"voucher.issued"} == SENSITIVE_TOPICS


def test_no_topic_carries_a_clear_code() -> None:
    assert [spec.name for spec in TOPICS if "code" in spec.payload.model_fields] == []


def test_voucher_issued_carries_its_code_sealed_for_the_delivery_service_alone(
    samples: dict[str, EventData],
) -> None:
    issued = samples[Topics.VOUCHER_ISSUED]
    assert isinstance(issued, VoucherIssued)
    wire = Envelope.new(event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=issued).to_bytes()
    assert CLEAR_CODE.encode() not in wire
    assert json.loads(wire)["schema_version"] == 2
    opened = CodeOpener([dev_key_pair()[0]]).open(issued.sealed_code, issued.code_id)
    assert opened.get_secret_value() == CLEAR_CODE


def test_a_version_one_voucher_issued_still_on_the_topic_is_read_with_its_model() -> None:
    v1 = VoucherIssuedV1(
        order_id=uuid.uuid4(),
        campaign_id="spring-thanks",
        code_id=uuid.uuid4(),
        code=CLEAR_CODE,
        masked_code="****-****-2W8P",
        face_value="25.00",
        currency="EUR",
    )
    wire = Envelope.new(event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=v1).to_bytes()
    assert json.loads(wire)["schema_version"] == 1
    received = Envelope.decode(wire, VoucherIssued, expected_type=Topics.VOUCHER_ISSUED)
    assert isinstance(received.data, VoucherIssuedV1)
    assert received.data.code.get_secret_value() == CLEAR_CODE
    assert CLEAR_CODE not in repr(received.data)


def test_a_version_one_voucher_issued_without_its_code_breaks_the_contract() -> None:
    document = {
        "event_id": str(uuid.uuid4()),
        "event_type": Topics.VOUCHER_ISSUED,
        "schema_version": 1,
        "occurred_at": "2026-03-31T09:30:00Z",
        "producer": "voucher",
        "correlation_id": "c",
        "data": {"order_id": str(uuid.uuid4()), "campaign_id": "c", "code_id": str(uuid.uuid4())},
    }
    with pytest.raises(ContractViolation) as caught:
        Envelope.decode(json.dumps(document), VoucherIssued)
    assert caught.value.code == "contract_violation"


class TestIntake:
    @pytest.mark.parametrize("email", ["ada@example.com", "a.b+tag@mail.example.co.uk"])
    def test_plausible_emails_pass(self, samples: dict[str, EventData], email: str) -> None:
        _with(samples, Topics.IPA_RECORD_SUBMITTED, email=email)

    @pytest.mark.parametrize("email", ["ada", "ada@example", "a da@example.com", "@example.com"])
    def test_implausible_emails_are_refused(self, samples: dict[str, EventData], email: str) -> None:
        with pytest.raises(ValidationError, match="email"):
            _with(samples, Topics.IPA_RECORD_SUBMITTED, email=email)

    @pytest.mark.parametrize(
        "phone", ["07700900123", "+0447700900123", "+44 7700 900123", "+4477009001234567"]
    )
    def test_phones_not_in_e164_are_refused(self, samples: dict[str, EventData], phone: str) -> None:
        with pytest.raises(ValidationError, match="phone"):
            _with(samples, Topics.IPA_RECORD_SUBMITTED, phone=phone)

    def test_an_accepted_voucher_reward_names_its_order(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="order_id"):
            _with(samples, Topics.IPA_RECORD_ACCEPTED, order_id=None)

    def test_an_accepted_points_reward_is_whole_and_creates_no_order(
        self, samples: dict[str, EventData]
    ) -> None:
        points = {"reward_type": "points", "currency": None, "order_id": None}
        _with(samples, Topics.IPA_RECORD_ACCEPTED, **points, amount="1500")
        with pytest.raises(ValidationError, match="whole number"):
            _with(samples, Topics.IPA_RECORD_ACCEPTED, **points, amount="15.5")
        with pytest.raises(ValidationError, match="creates no order"):
            _with(samples, Topics.IPA_RECORD_ACCEPTED, **{**points, "order_id": uuid.uuid4()})

    def test_a_rejection_says_why(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="errors"):
            _with(samples, Topics.IPA_RECORD_REJECTED, errors=[])


class TestOrders:
    def test_a_pending_order_has_a_fulfilment_status(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="fulfilment_status"):
            _with(samples, Topics.ORDER_STATE_CHANGED, fulfilment_status=None)

    def test_a_finished_order_has_no_fulfilment_status(self, samples: dict[str, EventData]) -> None:
        _with(samples, Topics.ORDER_STATE_CHANGED, state="completed", fulfilment_status=None)
        with pytest.raises(ValidationError, match="completed order has no fulfilment_status"):
            _with(samples, Topics.ORDER_STATE_CHANGED, state="completed", fulfilment_status="delivering")

    def test_a_cancel_request_names_the_order_by_either_id(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="order_id or external_ref"):
            _with(samples, Topics.ORDER_CANCEL_REQUESTED, external_ref=None)


class TestVouchers:
    def test_a_voucher_campaign_has_a_face_value_and_currency(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="face_value"):
            _with(samples, Topics.CAMPAIGN_CHANGED, face_value=None)

    def test_a_points_campaign_has_no_face_value(self, samples: dict[str, EventData]) -> None:
        _with(samples, Topics.CAMPAIGN_CHANGED, reward_type="points", face_value=None, currency="PTS")
        with pytest.raises(ValidationError, match="points campaign"):
            _with(samples, Topics.CAMPAIGN_CHANGED, reward_type="points", currency=None)

    @pytest.mark.parametrize(
        "policy",
        [{"kind": "none", "days": 3}, {"kind": "fixed_date"}, {"kind": "days_after_issue", "days": 0}],
    )
    def test_an_expiry_policy_carries_exactly_its_parameters(self, policy: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            ExpiryPolicy(**policy)

    def test_a_partial_redemption_leaves_value_on_the_code(self, samples: dict[str, EventData]) -> None:
        _with(samples, Topics.VOUCHER_REDEEMED, remaining_value="0", partial=False)
        with pytest.raises(ValidationError, match="partial"):
            _with(samples, Topics.VOUCHER_REDEEMED, remaining_value="0", partial=True)


class TestDelivery:
    def test_a_delivery_request_can_reach_its_recipient_on_its_channel(
        self, samples: dict[str, EventData]
    ) -> None:
        with pytest.raises(ValidationError, match="phone number"):
            _with(samples, Topics.DELIVERY_REQUESTED, channel="whatsapp", phone=None)
        with pytest.raises(ValidationError, match="email address"):
            _with(samples, Topics.DELIVERY_REQUESTED, channel="email")

    def test_a_member_message_may_leave_contact_details_to_delivery(
        self, samples: dict[str, EventData]
    ) -> None:
        message = _with(samples, Topics.DELIVERY_MESSAGE_REQUESTED, channel="sms")
        assert isinstance(message, DeliveryMessageRequested)
        assert message.phone is None


class TestWallet:
    def test_a_credit_request_uses_an_earn_entry_type(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="not a credit"):
            _with(samples, Topics.WALLET_CREDIT_REQUESTED, entry_type="redemption")

    def test_a_debit_request_uses_a_burn_entry_type(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="not a debit"):
            _with(samples, Topics.WALLET_DEBIT_REQUESTED, entry_type="milestone_award")

    def test_a_recorded_entry_moves_the_balance_the_way_its_type_says(
        self, samples: dict[str, EventData]
    ) -> None:
        with pytest.raises(ValidationError, match="not a credit"):
            _with(samples, Topics.WALLET_TRANSACTION_RECORDED, direction="credit")


class TestSupport:
    def test_a_breach_says_when_and_a_warning_does_not(self, samples: dict[str, EventData]) -> None:
        with pytest.raises(ValidationError, match="breached_at"):
            _with(samples, Topics.SUPPORT_SLA_BREACHED, breached_at=None)
        with pytest.raises(ValidationError, match="breached_at"):
            _with(samples, Topics.SUPPORT_SLA_BREACHED, kind="warning")
        _with(samples, Topics.SUPPORT_SLA_BREACHED, kind="warning", breached_at=None)

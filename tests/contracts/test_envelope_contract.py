from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.envelope import SCHEMA_VERSION, ContractViolation, Envelope, EventData
from contracts.orders import OrderStateChanged
from contracts.registry import TOPICS, topic
from contracts.topics import Topics
from contracts.wallet import WalletCreditRequested


def _wire(envelope: Envelope[Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(envelope.to_bytes())
    return document


def _envelope_for(name: str, samples: dict[str, EventData]) -> Envelope[Any]:
    return Envelope.new(event_type=name, producer=topic(name).producer, data=samples[name])


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.name)
def test_every_topic_round_trips_through_the_wire_unchanged(spec: Any, samples: dict[str, EventData]) -> None:
    sent = _envelope_for(spec.name, samples)
    received = Envelope.decode(sent.to_bytes(), spec.payload, expected_type=spec.name)
    assert received == sent
    assert received.data == samples[spec.name]
    assert received.to_bytes() == sent.to_bytes()


def test_the_wire_format_is_the_design_envelope(samples: dict[str, EventData]) -> None:
    document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
    assert set(document) == {
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "producer",
        "correlation_id",
        "causation_id",
        "data",
    }
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["event_type"] == "order.state_changed"
    assert document["occurred_at"].endswith("Z")
    uuid.UUID(document["event_id"])


def test_a_caused_event_keeps_the_correlation_and_points_at_its_cause(samples: dict[str, EventData]) -> None:
    cause = _envelope_for(Topics.ORDER_STATE_CHANGED, samples)
    effect = cause.caused(
        event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=samples[Topics.VOUCHER_ISSUED]
    )
    assert effect.correlation_id == cause.correlation_id == str(cause.event_id)
    assert effect.causation_id == str(cause.event_id)
    assert effect.event_id != cause.event_id


def test_times_are_normalised_to_utc(samples: dict[str, EventData]) -> None:
    paris = timezone(timedelta(hours=2))
    envelope = Envelope.new(
        event_type=Topics.WALLET_CREDIT_REQUESTED,
        producer="redemption",
        data=samples[Topics.WALLET_CREDIT_REQUESTED],
        occurred_at=datetime(2026, 1, 1, 12, tzinfo=paris),
    )
    assert envelope.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert envelope.occurred_at.utcoffset() == timedelta(0)


def test_times_without_a_zone_are_refused(samples: dict[str, EventData]) -> None:
    document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
    document["occurred_at"] = "2026-01-01T10:00:00"
    with pytest.raises(ContractViolation) as caught:
        Envelope.decode(json.dumps(document), OrderStateChanged)
    assert caught.value.code == "contract_violation"


class TestConsumersAreTolerant:
    def test_unknown_fields_in_data_and_envelope_are_ignored(self, samples: dict[str, EventData]) -> None:
        document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
        document["data"]["loyalty_tier"] = "gold"
        document["trace"] = {"span": 7}
        received = Envelope.decode(json.dumps(document).encode(), OrderStateChanged)
        assert received.data == samples[Topics.ORDER_STATE_CHANGED]

    def test_unknown_fields_in_nested_objects_are_ignored(self, samples: dict[str, EventData]) -> None:
        document = _wire(_envelope_for(Topics.WALLET_CREDIT_REQUESTED, samples))
        document["data"]["reference"]["invoice_id"] = "INV-1"
        received = Envelope.decode(json.dumps(document), WalletCreditRequested)
        assert received.data == samples[Topics.WALLET_CREDIT_REQUESTED]

    def test_an_envelope_without_schema_version_is_read_as_version_one(
        self, samples: dict[str, EventData]
    ) -> None:
        document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
        del document["schema_version"]
        assert Envelope.decode(json.dumps(document), OrderStateChanged).schema_version == 1


class TestProducersAreStrict:
    def test_unknown_fields_are_refused_when_a_payload_is_built(self, samples: dict[str, EventData]) -> None:
        built = samples[Topics.ORDER_STATE_CHANGED].model_dump()
        with pytest.raises(ValidationError, match="unknown field"):
            OrderStateChanged(**built, loyalty_tier="gold")

    def test_unknown_fields_are_refused_in_nested_objects(self, samples: dict[str, EventData]) -> None:
        built = samples[Topics.WALLET_CREDIT_REQUESTED].model_dump()
        with pytest.raises(ValidationError, match="invoice_id"):
            WalletCreditRequested(**(built | {"reference": {"invoice_id": "INV-1"}}))

    def test_validating_a_dict_without_the_tolerant_context_is_strict(self) -> None:
        with pytest.raises(ValidationError, match="unknown field"):
            OrderStateChanged.model_validate({"order_id": str(uuid.uuid4()), "extra": 1})


class TestUnprocessableMessages:
    @pytest.mark.parametrize(
        "raw",
        [b"\xff\xfe not utf-8", b"{not json", b"", b"[1, 2]", b'"a string"'],
        ids=["bad-utf8", "bad-json", "empty", "array", "string"],
    )
    def test_undecodable_bytes(self, raw: bytes) -> None:
        with pytest.raises(ContractViolation) as caught:
            Envelope.decode(raw, OrderStateChanged)
        assert caught.value.code == "undecodable"

    def test_an_event_on_the_wrong_topic(self, samples: dict[str, EventData]) -> None:
        raw = _envelope_for(Topics.VOUCHER_ISSUED, samples).to_bytes()
        with pytest.raises(ContractViolation) as caught:
            Envelope.decode(raw, OrderStateChanged, expected_type=Topics.ORDER_STATE_CHANGED)
        assert caught.value.code == "wrong_event_type"
        assert "voucher.issued" in caught.value.reason

    def test_a_newer_schema_version(self, samples: dict[str, EventData]) -> None:
        document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
        document["schema_version"] = SCHEMA_VERSION + 1
        document["data"] = {"shape": "of version two"}
        with pytest.raises(ContractViolation) as caught:
            Envelope.decode(json.dumps(document), OrderStateChanged, expected_type=Topics.ORDER_STATE_CHANGED)
        assert caught.value.code == "unsupported_schema_version"

    def test_a_payload_breaking_its_contract_names_each_field(self, samples: dict[str, EventData]) -> None:
        document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
        del document["data"]["order_id"]
        document["data"]["state"] = "lost"
        with pytest.raises(ContractViolation) as caught:
            Envelope.decode(json.dumps(document), OrderStateChanged)
        violation = caught.value
        assert violation.code == "contract_violation"
        assert {error["field"] for error in violation.errors} == {"data.order_id", "data.state"}
        assert all(error["code"] and error["message"] for error in violation.errors)

    def test_a_broken_envelope(self, samples: dict[str, EventData]) -> None:
        document = _wire(_envelope_for(Topics.ORDER_STATE_CHANGED, samples))
        document["event_id"] = "not-a-uuid"
        with pytest.raises(ContractViolation) as caught:
            Envelope.decode(json.dumps(document), OrderStateChanged)
        assert caught.value.errors[0]["field"] == "event_id"

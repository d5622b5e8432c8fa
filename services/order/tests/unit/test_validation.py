"""The IPA validation rules, one by one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.values import Channel, RewardType
from contracts.vouchers import CampaignStatus
from services.order.validation import (
    RECORD_FIELDS,
    CampaignView,
    duplicate_in_file,
    duplicate_of,
    validate_record,
)

CAMPAIGNS = {
    "eur": CampaignView(
        "eur", RewardType.VOUCHER, CampaignStatus.ACTIVE, "EUR", Decimal("100"), Channel.EMAIL
    ),
    "jpy": CampaignView("jpy", RewardType.VOUCHER, CampaignStatus.ACTIVE, "JPY", None, Channel.SMS),
    "pts": CampaignView(
        "pts", RewardType.POINTS, CampaignStatus.ACTIVE, None, Decimal("1000"), Channel.EMAIL
    ),
    "paused": CampaignView("paused", RewardType.VOUCHER, CampaignStatus.PAUSED, "EUR", None, Channel.EMAIL),
    "gift": CampaignView(
        "gift",
        RewardType.VOUCHER,
        CampaignStatus.ACTIVE,
        "EUR",
        None,
        Channel.EMAIL,
        face_value=Decimal("25.0000"),
        denominations=(Decimal("10.0000"), Decimal("50.0000")),
    ),
}


def record(**overrides: Any) -> dict[str, Any]:
    base = {
        "external_ref": "ref-1",
        "member_id": "m-1",
        "email": "ada@example.com",
        "campaign_id": "eur",
        "reward_type": "voucher",
        "amount": "25.00",
        "currency": "EUR",
    }
    base.update(overrides)
    return base


def codes(**overrides: Any) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in validate_record(record(**overrides), CAMPAIGNS).errors}


def test_a_complete_record_is_valid_and_normalised() -> None:
    outcome = validate_record(record(channel="EMAIL", currency="eur", phone="+447700900123"), CAMPAIGNS)

    assert outcome.errors == []
    assert outcome.record is not None
    assert (outcome.record.amount, outcome.record.currency, outcome.record.channel) == (
        Decimal("25.00"),
        "EUR",
        Channel.EMAIL,
    )


@pytest.mark.parametrize("field", ["external_ref", "member_id", "campaign_id", "reward_type", "amount"])
def test_each_required_field_is_reported_when_missing_or_blank(field: str) -> None:
    assert (field, "required") in codes(**{field: None})
    assert (field, "required") in codes(**{field: "   "})


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    found = codes(member_id=None, email="nope", amount="abc", currency="EURO")

    assert found >= {
        ("member_id", "required"),
        ("email", "invalid_email"),
        ("amount", "invalid_amount"),
        ("currency", "invalid_currency"),
    }


def test_a_member_id_with_spaces_is_refused() -> None:
    assert ("member_id", "invalid_member_id") in codes(member_id="john smith")


@pytest.mark.parametrize("email", ["ada", "ada@", "ada@example", "a b@example.com", "ada@@example.com"])
def test_email_syntax(email: str) -> None:
    assert ("email", "invalid_email") in codes(email=email)


@pytest.mark.parametrize("phone", ["07700900123", "+0447700900", "+44 7700 900", "+12", "+1234567890123456"])
def test_phone_must_be_e164(phone: str) -> None:
    assert ("phone", "invalid_phone") in codes(phone=phone, channel="sms")


def test_channel_must_be_known() -> None:
    assert ("channel", "invalid_channel") in codes(channel="pigeon")


def test_channel_must_be_reachable_with_the_contact_given() -> None:
    assert ("channel", "channel_unreachable") in codes(channel="sms")
    assert ("channel", "channel_unreachable") in codes(channel="email", email=None)
    assert ("channel", "channel_unreachable") in codes(campaign_id="jpy", currency="JPY", amount="500")
    assert codes(channel="whatsapp", phone="+447700900123") == set()


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "amount_not_positive"),
        ("-5", "amount_not_positive"),
        ("1e3", "invalid_amount"),
        ("12,50", "invalid_amount"),
        ("25.001", "amount_precision"),
        ("100.01", "amount_over_limit"),
    ],
)
def test_amount_rules(amount: str, code: str) -> None:
    assert ("amount", code) in codes(amount=amount)


def test_a_json_number_is_not_an_amount() -> None:
    assert ("amount", "invalid_amount") in codes(amount=25.5)


def test_precision_follows_the_currency() -> None:
    assert ("amount", "amount_precision") in codes(
        campaign_id="jpy", currency="JPY", amount="5.5", phone="+4477009001"
    )
    assert codes(campaign_id="jpy", currency="JPY", amount="500", phone="+447700900123") == set()


@pytest.mark.parametrize("amount", ["25", "25.00", "10.0", "50"])
def test_an_amount_some_code_of_the_campaign_is_worth_is_valid(amount: str) -> None:
    assert codes(campaign_id="gift", amount=amount) == set()


def test_an_amount_no_code_of_the_campaign_is_worth_is_refused_naming_the_values() -> None:
    outcome = validate_record(record(campaign_id="gift", amount="30.00"), CAMPAIGNS)

    assert [(e.field, e.code) for e in outcome.errors] == [("amount", "amount_not_a_denomination")]
    assert "10, 25, 50" in outcome.errors[0].message


def test_points_are_whole_and_carry_no_currency() -> None:
    assert codes(campaign_id="pts", reward_type="points", amount="250", currency=None) == set()
    assert codes(campaign_id="pts", reward_type="points", amount="250", currency="PTS") == set()
    assert ("amount", "amount_precision") in codes(
        campaign_id="pts", reward_type="points", amount="2.5", currency=None
    )
    assert ("currency", "currency_mismatch") in codes(campaign_id="pts", reward_type="points", currency="EUR")


def test_currency_must_match_the_campaign() -> None:
    assert ("currency", "currency_mismatch") in codes(currency="USD")
    assert ("currency", "required") in codes(currency=None)


def test_campaign_must_exist_and_be_active() -> None:
    assert ("campaign_id", "unknown_campaign") in codes(campaign_id="nope")
    assert ("campaign_id", "campaign_inactive") in codes(campaign_id="paused")


def test_reward_type_must_be_known_and_match_the_campaign() -> None:
    assert ("reward_type", "invalid_reward_type") in codes(reward_type="cash")
    assert ("reward_type", "reward_type_mismatch") in codes(campaign_id="pts")


@pytest.mark.parametrize("value", ["=1+2", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3", " =1+2"])
def test_formula_looking_cells_are_refused(value: str) -> None:
    assert ("name", "formula_like") in codes(name=value)


def test_phone_numbers_and_negative_numbers_are_not_formulas() -> None:
    assert ("phone", "formula_like") not in codes(phone="+447700900123")
    assert ("amount", "formula_like") not in codes(amount="-5")


def test_overlong_and_control_character_cells_are_refused() -> None:
    assert ("name", "too_long") in codes(name="x" * 201)
    assert ("reason", "control_characters") in codes(reason="a\x00b")


def test_duplicates_point_at_the_first_row_or_the_original() -> None:
    assert "row 3" in duplicate_in_file(3).message
    original = {
        "accepted_at": datetime(2026, 1, 2, tzinfo=UTC),
        "order_id": "o-1",
        "batch_id": "b-1",
        "row_number": 7,
        "source": "csv",
    }
    message = duplicate_of(original).message
    assert duplicate_of(original).code == "duplicate"
    assert "o-1" in message
    assert "b-1 row 7" in message


cell_values = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(["eur", "pts", "voucher", "points", "25.00", "EUR", "+447700900123", "a@b.co", "sms"]),
)


@given(st.dictionaries(st.sampled_from(RECORD_FIELDS), cell_values))
def test_any_cells_get_a_verdict_never_an_exception(cells: dict[str, Any]) -> None:
    outcome = validate_record(cells, CAMPAIGNS)

    assert (outcome.record is None) == bool(outcome.errors)
    for error in outcome.errors:
        assert error.field in (*RECORD_FIELDS, "record")
        assert error.code
        assert error.message
    if outcome.record is not None:
        campaign = CAMPAIGNS[outcome.record.campaign_id]
        assert outcome.record.amount > 0
        assert outcome.record.reward_type is campaign.reward_type
        assert outcome.record.currency == campaign.currency


@pytest.mark.parametrize(
    ("cell", "flag"),
    [
        (True, True),
        (False, False),
        (None, False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("no", False),
        ("", False),
    ],
)
def test_the_test_flag_is_read_from_json_booleans_and_csv_spellings(cell: Any, flag: bool) -> None:
    outcome = validate_record(record(test=cell), CAMPAIGNS)

    assert outcome.record is not None
    assert outcome.record.test is flag


def test_a_test_flag_that_is_neither_true_nor_false_is_refused_on_its_field() -> None:
    assert codes(test="maybe") == {("test", "invalid_flag")}
    assert codes(test=2) == {("test", "invalid_flag")}


def test_a_points_reward_cannot_be_a_test_order() -> None:
    assert codes(campaign_id="pts", reward_type="points", amount="10", currency=None, test="true") == {
        ("test", "test_not_voucher")
    }

"""Code operations and partner redemptions refuse NUL bytes naming the field, before any query runs
(a database error names no field)."""

import uuid

import pytest
from pydantic import BaseModel

from chassis.validation_refusals import refused_fields
from services.voucher.api_campaigns import CampaignCreate
from services.voucher.api_codes import Flag, Generate, Recover
from services.voucher.api_redemptions import RedemptionRequest

CASES = [
    (Flag, {"code_ids": [str(uuid.uuid4())], "reason": "fraud"}, "reason"),
    (Recover, {"code_ids": [str(uuid.uuid4())], "reason": "wrong member"}, "reason"),
    (Generate, {"count": 10}, "prefix"),
    (Generate, {"count": 10}, "alphabet"),
    (RedemptionRequest, {"code": "ABCD-1234", "channel": "online", "idempotency_key": "k-1"}, "channel"),
    (RedemptionRequest, {"code": "ABCD-1234", "channel": "online", "idempotency_key": "k-1"}, "location"),
    (
        RedemptionRequest,
        {"code": "ABCD-1234", "channel": "online", "idempotency_key": "k-1"},
        "idempotency_key",
    ),
]


@pytest.mark.parametrize(("model", "body", "field"), CASES)
def test_a_nul_byte_is_refused_naming_the_field(
    model: type[BaseModel], body: dict[str, object], field: str
) -> None:
    assert refused_fields(model, {**body, field: "ABC\x00DEF"}) == [(field,)]


CAMPAIGN = {"name": "Coffee", "face_value": "10.00", "currency": "EUR"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("campaign_id", "c\x00"),
        ("name", "n\x00"),
        ("brand", "b\x00"),
        ("face_value", "100000000000000"),
        ("budget", "100000000000000"),
        ("per_record_limit", "100000000000000"),
        ("low_stock_threshold", 2**31),
    ],
)
def test_a_campaign_its_columns_cannot_hold_is_refused_naming_the_field(field: str, value: object) -> None:
    assert refused_fields(CampaignCreate, {**CAMPAIGN, field: value}) == [(field,)]


def test_a_campaign_at_the_column_limits_is_accepted() -> None:
    campaign = CampaignCreate.model_validate(
        {**CAMPAIGN, "face_value": "99999999999999.9999", "low_stock_threshold": 2**31 - 1}
    )

    assert campaign.low_stock_threshold == 2**31 - 1

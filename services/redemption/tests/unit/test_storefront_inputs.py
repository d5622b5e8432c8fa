"""Storefront request bodies refuse what the rewards table cannot hold, naming the field, before any
query runs (a database error names no field)."""

import pytest
from pydantic import ValidationError

from services.redemption.storefront.api import RedemptionIn, RewardIn

REWARD = {"name": "Coffee", "campaign_id": "demo-coffee", "points_price": "100"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stock", 2**31),
        ("points_price", str(2**31)),
        ("description", "a\x00b"),
        ("name", "a\x00b"),
        ("reward_id", "r\x00"),
        ("campaign_id", "c\x00"),
    ],
)
def test_a_reward_that_its_columns_cannot_hold_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        RewardIn.model_validate({**REWARD, field: value})

    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_a_reward_at_the_column_limits_is_accepted() -> None:
    reward = RewardIn.model_validate({**REWARD, "stock": 2**31 - 1, "points_price": str(2**31 - 1)})

    assert (reward.stock, reward.points_price) == (2**31 - 1, 2**31 - 1)


def test_a_redemption_with_a_nul_in_the_email_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        RedemptionIn.model_validate({"reward_id": "r", "email": "a\x00@example.com"})

    assert [error["loc"] for error in refused.value.errors()] == [("email",)]

"""A directly placed order refuses NUL bytes naming the field, before any query runs (a database
error names no field)."""

import pytest
from pydantic import ValidationError

from services.order.api import PlaceOrder

ORDER = {
    "external_ref": "ext-1",
    "member_id": "m-1",
    "campaign_id": "demo-coffee",
    "amount": "25.00",
    "currency": "EUR",
}


@pytest.mark.parametrize("field", [*ORDER, "name", "email", "phone", "channel", "reason"])
def test_a_nul_byte_in_any_field_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PlaceOrder.model_validate({**ORDER, field: "a\x00b"})

    assert [error["loc"] for error in refused.value.errors()] == [(field,)]

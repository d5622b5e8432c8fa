"""A recipient correction refuses NUL bytes naming the field, before any query runs (a database
error names no field)."""

import pytest
from pydantic import ValidationError

from services.delivery.api import Correction, ResendRequest


@pytest.mark.parametrize("field", ["email", "reason"])
def test_a_correction_with_a_nul_byte_is_refused_naming_the_field(field: str) -> None:
    body = {"email": "someone@example.com", field: "someone\x00@example.com"}

    with pytest.raises(ValidationError) as refused:
        Correction.model_validate(body)

    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_a_resend_reason_with_a_nul_byte_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        ResendRequest.model_validate({"reason": "a\x00b"})

    assert [error["loc"] for error in refused.value.errors()] == [("reason",)]

"""Value types shared by the payload models: amounts, ids, contact details, codes, shared enums.

Money and points travel as decimal strings (DESIGN.md §5): a JSON number would pass through
floating point somewhere on its way and lose cents. Contact details are checked only lightly
here; the order service owns the strict rules and reports them per field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
)

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
INTEGER_PATTERN = r"^-?[0-9]+$"
_DECIMAL = re.compile(DECIMAL_PATTERN)
_INTEGER = re.compile(INTEGER_PATTERN)


def _decimal_input(value: Any) -> Any:
    # bool is an int subclass and float is inexact: neither can be an amount.
    if isinstance(value, bool | float):
        raise ValueError("amounts are decimal strings such as '12.50', not JSON numbers")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError("not a plain decimal string such as '12.50'")
    return value


def _decimal_text(value: Decimal) -> str:
    # Fixed-point keeps the producer's scale ('10.50' stays '10.50') and never emits '1E+2'.
    return format(value, "f")


def _points_input(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("points are integer strings such as '250', not JSON numbers")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise ValueError("not a whole number of points such as '250'")
        return int(value)
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_input),
    Field(allow_inf_nan=False, decimal_places=4),
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "description": "decimal string"}),
]
"""A money amount (or a count of points before the campaign says which): decimal string on the wire."""

PositiveMoney = Annotated[Money, Field(gt=0)]
NonNegativeMoney = Annotated[Money, Field(ge=0)]

Points = Annotated[
    int,
    BeforeValidator(_points_input),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": INTEGER_PATTERN, "description": "integer string"}),
]
"""A number of points: whole, integer string on the wire."""

PositivePoints = Annotated[Points, Field(gt=0)]
NonNegativePoints = Annotated[Points, Field(ge=0)]

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An instant with a time zone (RFC 3339), normalised to UTC."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 code; `PTS` stands for points where a currency is asked for."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""An id another system chose (member id, external ref, campaign id, partner id…)."""

Text = Annotated[str, StringConstraints(max_length=2000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""Who caused something: a user (`admin:alice`), a service (`service:redemption`) or a system."""

Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$")]
"""E.164: `+` and up to 15 digits."""

Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
"""A BCP 47 language tag such as `en` or `pt-BR`."""

ClearCode = Annotated[
    SecretStr,
    PlainSerializer(lambda code: code.get_secret_value(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "minLength": 1, "description": "voucher code in clear text"}),
]
"""A voucher code in clear text. Kept as a secret in memory so a logged model never shows it."""

SEALED_CODE_PATTERN = r"^[a-z0-9]+\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]+$"
SealedCode = Annotated[
    str,
    StringConstraints(pattern=SEALED_CODE_PATTERN, max_length=4096),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SEALED_CODE_PATTERN,
            "description": "a voucher code sealed for the delivery service: `<scheme>.<key id>.<base64url>`; "
            "opaque to everyone else",
        }
    ),
]
"""A voucher code encrypted so that only the holder of the delivery service's private key can open it."""


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class RewardType(StrEnum):
    VOUCHER = "voucher"
    POINTS = "points"


POINTS_CURRENCY = "PTS"

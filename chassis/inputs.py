"""Constrained input types: what a request may carry is what its Postgres column can hold.

Bad input is refused with a 422 naming the field (DESIGN.md §5 "Bodies and anonymity"), never
discovered by the database as a 5xx: text never holds a NUL byte (Postgres `text` and `jsonb`
cannot store one) and has a maximum length, integers fit their column (`integer` is 32 bits,
`bigint` 64), and datetimes carry a time zone (a naive one cannot be compared with an aware one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import time
from typing import Annotated, Any, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, WithJsonSchema

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
NUL: Final = "\x00"


def refuse_nul(value: str) -> str:
    """The value itself, or a ValueError when it holds a NUL byte."""
    if NUL in value:
        raise ValueError("must not contain a NUL byte")
    return value


NoNul = AfterValidator(refuse_nul)
"""Add to any `Annotated[str, ...]` to refuse NUL bytes: `Annotated[str, StringConstraints(...), NoNul]`."""

Text = Annotated[str, StringConstraints(max_length=2000), NoNul]
"""Free text of at most 2000 characters, without NUL bytes."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
"""A short non-empty label or id, without NUL bytes."""
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
"""An id another system chose, without NUL bytes (contracts.values.Identifier for request bodies)."""
ShortText = Annotated[str, StringConstraints(max_length=200), NoNul]
"""A short string (possibly empty) without NUL bytes."""

Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
"""An integer that fits a Postgres `integer` column."""
PositiveInt32 = Annotated[int, Field(gt=0, le=INT32_MAX)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An integer that fits a Postgres `bigint` column."""
PositiveInt64 = Annotated[int, Field(gt=0, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]

Aware = AwareDatetime
"""A datetime with a time zone; a naive one is refused."""


def _refuse_offset(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a time of day without an offset: the time zone is given separately")
    return value


# JSON Schema's `time` format is RFC 3339's full-time, which requires an offset: these are described
# by a pattern instead, so the document promises (and a generated request sends) what is accepted.
LOCAL_TIME_PATTERN: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"

LocalTime = Annotated[
    time,
    AfterValidator(_refuse_offset),
    WithJsonSchema(
        {"type": "string", "pattern": LOCAL_TIME_PATTERN, "description": "HH:MM[:SS], without an offset"}
    ),
]
"""A wall-clock time of day read in a time zone named elsewhere; one carrying an offset is refused
(it could not be compared with the other times of day, and the named zone decides anyway)."""


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (key or value) holding a NUL byte in a JSON-like value."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            child = f"{path}.{key_text}" if path else key_text
            if NUL in key_text:
                return child
            found = nul_path(item, child)
            if found is not None:
                return found
        return None
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None

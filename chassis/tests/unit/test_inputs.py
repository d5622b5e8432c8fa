"""Constrained input types refuse what Postgres cannot hold, before it reaches the database."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from asyncpg.exceptions._base import DataError as QueryArgumentError
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from chassis.http import create_http_app
from chassis.inputs import (
    INT32_MAX,
    INT64_MAX,
    Aware,
    Int32,
    Int64,
    Name,
    PositiveInt32,
    Text,
    nul_path,
)
from chassis.settings import Settings


class Form(BaseModel):
    title: Name
    note: Text | None = None
    count: Int32 = 0
    positive: PositiveInt32 = 1
    cursor: Int64 = 0
    at: Aware | None = None


def _fields(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in error.errors()]


def test_a_nul_byte_in_text_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Form(title="ok", note="a\x00b")
    assert _fields(caught.value) == ["note"]


def test_a_nul_byte_in_a_name_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Form(title="\x00")
    assert _fields(caught.value) == ["title"]


def test_text_longer_than_its_maximum_is_refused() -> None:
    with pytest.raises(ValidationError):
        Form(title="x" * 201)


def test_ordinary_text_and_integers_at_the_column_limits_are_accepted() -> None:
    form = Form(title="Lunch", note="é ✓", count=INT32_MAX, positive=INT32_MAX, cursor=INT64_MAX)
    assert form.count == INT32_MAX
    assert form.cursor == INT64_MAX


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("count", INT32_MAX + 1),
        ("count", -(2**31) - 1),
        ("positive", 0),
        ("positive", 2**40),
        ("cursor", INT64_MAX + 1),
        ("cursor", 10**30),
    ],
)
def test_an_integer_outside_its_column_range_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as caught:
        Form(title="ok", **{field: value})
    assert _fields(caught.value) == [field]


def test_a_naive_datetime_is_refused_and_an_aware_one_accepted() -> None:
    with pytest.raises(ValidationError) as caught:
        Form(title="ok", at="2026-01-01T09:00:00")
    assert _fields(caught.value) == ["at"]
    assert Form(title="ok", at="2026-01-01T09:00:00Z").at == datetime(2026, 1, 1, 9, tzinfo=UTC)


def test_nul_path_names_the_first_key_or_value_holding_a_nul_byte() -> None:
    assert nul_path({"a": "fine", "b": ["x", {"c": "y\x00"}]}) == "b.1.c"
    assert nul_path({"k\x00": "v"}) == "k\x00"
    assert nul_path(["ok", 3, None, {"n": 1.5}]) is None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence in "SELECT secret_sql"'),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range in INSERT INTO offers"),
        asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted to text"),
        QueryArgumentError("invalid input for query argument $1: 99999999999 (value out of int64 range)"),
    ],
)
async def test_a_value_the_database_refuses_is_a_422_problem_without_sql_text(error: Exception) -> None:
    router = APIRouter()

    @router.post("/v1/things")
    async def store() -> None:
        raise error

    app = create_http_app(Settings(), title="inputs test", readiness_checks={}, routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/v1/things")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "invalid_value"
    for leak in ("SELECT", "INSERT", "$1", "99999999999", "u0000", "secret_sql"):
        assert leak not in response.text

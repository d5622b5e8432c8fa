"""Directory rules and the CSV reader, without I/O."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from contracts.values import Channel
from services.delivery.members import importing
from services.delivery.members.domain import (
    NulInEntry,
    changed_fields,
    is_stale,
    normalised,
    reaching_channel,
)

EMPTY = {
    "name": None,
    "email": None,
    "phone": None,
    "locale": None,
    "preferred_channel": None,
    "opted_out": [],
    "employment_status": None,
}


def test_only_fields_given_are_changed_and_opt_outs_compare_as_sets():
    held = {**EMPTY, "email": "a@example.com", "opted_out": ["ticket_updated", "points_credited"]}
    wanted = normalised(
        {"email": "a@example.com", "opted_out": ["points_credited", "ticket_updated"], "phone": None}
    )

    assert changed_fields(held, wanted) == []
    assert changed_fields(held, normalised({"preferred_channel": Channel.SMS})) == ["preferred_channel"]


def test_a_nul_byte_is_refused_naming_the_field():
    with pytest.raises(NulInEntry) as refused:
        normalised({"name": "A\x00"})
    assert refused.value.field == "name"


def test_an_hr_change_older_than_the_applied_one_is_stale():
    now = datetime.now(UTC)
    assert is_stale(now - timedelta(seconds=1), now)
    assert not is_stale(now, now)
    assert not is_stale(None, now)
    assert not is_stale(now, None)


def test_the_first_reachable_channel_is_chosen():
    assert reaching_channel((Channel.WHATSAPP, Channel.SMS), None, "+447700900111") is Channel.WHATSAPP
    assert reaching_channel((Channel.EMAIL, Channel.SMS), None, "+447700900111") is Channel.SMS
    assert reaching_channel((None,), "a@example.com", None) is Channel.EMAIL
    assert reaching_channel((Channel.SMS,), None, None) is None


def _rows(text: str) -> list[importing.ImportRow]:
    return list(importing.rows(io.BytesIO(text.encode())))


def test_csv_rows_are_checked_against_the_member_contract_by_row_and_field():
    rows = _rows(
        "\ufeffmember_id,email,opted_out\r\n"
        "m-1,a@example.com,points_credited; ticket_updated\r\n"
        "\r\n"
        "m-2,bad,\r\n"
    )

    assert rows[0].member is not None
    assert rows[0].member.opted_out == ["points_credited", "ticket_updated"]
    assert [(e.row, e.field) for e in rows[1].errors] == [(2, "email")]


def test_a_row_with_the_wrong_number_of_fields_is_refused_as_a_row():
    (row,) = _rows("member_id,email\r\nm-1,a@example.com,extra\r\n")
    assert [(e.field, e.code) for e in row.errors] == [("row", "wrong_field_count")]


def test_a_formula_guard_from_our_own_exports_is_dropped():
    (row,) = _rows("member_id,name\r\nm-1,'=Ann\r\n")
    assert row.member is not None
    assert row.member.name == "=Ann"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty_file"),
        ("email\r\na@example.com\r\n", "missing_column"),
        ("member_id,member_id\r\n", "duplicate_column"),
        ("member_id,shoe_size\r\n", "unknown_column"),
        (b"member_id\r\n\xff\r\n", "bad_encoding"),
        ('member_id,name\r\nm-1,"open\r\n', "malformed_csv"),
    ],
)
def test_an_unreadable_file_is_refused_as_a_whole(text, code):
    data = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(importing.ImportFileError) as refused:
        list(importing.rows(io.BytesIO(data)))
    assert refused.value.code == code

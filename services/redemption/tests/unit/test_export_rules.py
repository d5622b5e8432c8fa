"""Export rules: each purpose's fixed field set, formula-safe CSV cells, JSON lines."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.redemption.exports import domain as d


def test_only_the_audit_purpose_carries_member_ids() -> None:
    carrying = {p for p, fields in d.ALLOWED_FIELDS.items() if "member_id" in fields}
    assert carrying == {d.Purpose.AUDIT}


def test_asking_for_a_field_outside_the_purpose_is_refused_and_named() -> None:
    with pytest.raises(d.FieldsNotAllowed) as refused:
        d.choose_fields(d.Purpose.PARTNER_SETTLEMENT, ["amount", "member_id", "segment_token"])
    assert refused.value.fields == ("member_id", "segment_token")


def test_chosen_fields_follow_the_purpose_order_and_default_to_all() -> None:
    assert d.choose_fields(d.Purpose.ANALYTICS, ["channel", "kind"]) == ("kind", "channel")
    assert d.choose_fields(d.Purpose.ANALYTICS, None) == d.ALLOWED_FIELDS[d.Purpose.ANALYTICS]


@given(st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_no_csv_cell_a_spreadsheet_reads_as_a_formula_and_values_survive(values: list[str]) -> None:
    fields = [f"f{i}" for i in range(len(values))]
    text = d.render_csv([dict(zip(fields, values, strict=True))], fields, header=True)
    [header, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert header == fields
    for written, original in zip(row, values, strict=True):
        assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert written in (original, "'" + original)


def test_json_lines_carry_exactly_the_chosen_fields() -> None:
    text = d.render_jsonl([{"a": 1, "b": "x", "secret": "no"}], ["a", "b"])
    assert [json.loads(line) for line in text.splitlines()] == [{"a": 1, "b": "x"}]

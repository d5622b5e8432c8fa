"""Streaming CSV reading and the error report."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.order.csvfile import CsvFileError, CsvRecordStream, report_header, report_line

HEADER = b"external_ref,member_id,name,campaign_id,reward_type,amount\n"


def read(data: bytes, chunk: int) -> list:
    stream = CsvRecordStream()
    rows = []
    for i in range(0, len(data), chunk):
        rows += stream.feed(data[i : i + chunk])
    return rows + stream.finish()


@given(st.integers(min_value=1, max_value=40))
def test_rows_come_out_the_same_whatever_the_chunk_size(chunk: int) -> None:
    body = (
        'r1,m1,"Smith, Ann",c,voucher,1\r\nr2,m2,"two\nlines ""quoted""",c,voucher,2\n\nr3,m3,É,c,voucher,3'
    )
    data = HEADER + body.encode()

    rows = read(data, chunk)

    assert [r.row_number for r in rows] == [1, 2, 3]
    assert rows[0].cells["name"] == "Smith, Ann"
    assert rows[1].cells["name"] == 'two\nlines "quoted"'
    assert rows[2].cells["name"] == "É"


def test_a_bom_is_ignored_and_header_case_does_not_matter() -> None:
    rows = read("\ufeffExternal_Ref,MEMBER_ID,campaign_id,reward_type,amount\nr,m,c,voucher,1\n".encode(), 8)

    assert rows[0].cells["external_ref"] == "r"


def test_a_row_with_the_wrong_number_of_fields_is_a_row_problem() -> None:
    rows = read(HEADER + b"r1,m1\n", 100)

    assert rows[0].problem is not None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (HEADER + b"r1,m1,\xe9,c,voucher,1\n", "bad_encoding"),
        (b"", "empty_file"),
        (b"r1,m1,c,voucher,1\n", "missing_header"),
        (b"external_ref\tmember_id\tcampaign_id\n", "wrong_delimiter"),
        (b"external_ref,member_id,member_id,campaign_id,reward_type,amount\n", "duplicate_column"),
        (HEADER + b'r1,m1,"never closed,c,voucher,1\n', "unterminated_quote"),
        (HEADER + b'r1,m1,"Ann" Smith,c,voucher,1\n', "malformed_csv"),
    ],
)
def test_unreadable_files_are_refused_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(CsvFileError) as caught:
        read(data, 7)

    assert caught.value.code == code


def test_the_encoding_error_names_the_line() -> None:
    with pytest.raises(CsvFileError, match="line 3"):
        read(HEADER + b"r1,m1,a,c,voucher,1\nr2,m2,\xff,c,voucher,1\n", 1000)


@given(st.text(alphabet="=+-@abc1 '", max_size=12))
def test_an_escaped_cell_reads_back_as_it_was(value: str) -> None:
    line = report_header() + report_line(
        1,
        {
            "name": value,
            "external_ref": "r",
            "member_id": "m",
            "campaign_id": "c",
            "reward_type": "voucher",
            "amount": "1",
        },
        [],
    )
    [row] = read(line.encode(), 5)

    assert row.cells.get("name") == (value if value.strip() else None)


def test_the_report_keeps_formulas_inert_and_lists_errors() -> None:
    line = report_line(
        4,
        {"name": "=HYPERLINK()", "phone": "+4477"},
        [{"field": "name", "code": "formula_like", "message": "no"}],
    )
    [cells] = list(csv.reader(io.StringIO(line)))

    assert "'=HYPERLINK()" in cells
    assert cells[-2:] == ["4", "name: formula_like: no"]


@given(
    st.one_of(st.binary(max_size=300), st.text(alphabet='ab,"\n\r é', max_size=60).map(str.encode)),
    st.integers(min_value=1, max_value=50),
)
def test_any_bytes_are_read_or_refused_with_a_code_never_crash(data: bytes, chunk: int) -> None:
    code, rows = None, []
    try:
        rows = read(HEADER + data, chunk)
    except CsvFileError as exc:
        code = exc.code

    assert code in {None, "bad_encoding", "unterminated_quote", "malformed_csv"}
    assert [r.row_number for r in rows] == list(range(1, len(rows) + 1))

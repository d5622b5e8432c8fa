from hypothesis import given
from hypothesis import strategies as st

from chassis.spreadsheet import FORMULA_STARTS, spreadsheet_safe, spreadsheet_unescape


@given(st.sampled_from(FORMULA_STARTS), st.text())
def test_a_cell_a_spreadsheet_would_run_is_shown_as_text(start: str, rest: str) -> None:
    assert spreadsheet_safe(start + rest) == "'" + start + rest


@given(st.text())
def test_unescaping_a_safe_cell_gives_the_value_back(value: str) -> None:
    assert spreadsheet_unescape(spreadsheet_safe(value)) == value


@given(st.text())
def test_no_safe_cell_starts_like_a_formula(value: str) -> None:
    assert not spreadsheet_safe(value).startswith(FORMULA_STARTS)


def test_plain_values_are_left_alone() -> None:
    assert spreadsheet_safe("Coffee voucher") == "Coffee voucher"
    assert spreadsheet_safe(None) == ""
    assert spreadsheet_safe(True) == "true"
    assert spreadsheet_safe(25) == "25"

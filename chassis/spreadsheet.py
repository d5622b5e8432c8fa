"""CSV cells that spreadsheet programs show as text and never run (OWASP "CSV injection").

Every CSV we hand to people — error reports, ledger exports, redemption exports — goes through
`spreadsheet_safe`; a file we wrote can be read back with `spreadsheet_unescape` and gives the exact
values again, so a corrected error report can be uploaded as it is.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _runs_as_formula(text: str) -> bool:
    # Quotes already in front are escaped once more, so that unescaping gives the cell exactly as it was.
    return text.lstrip("'").startswith(FORMULA_STARTS)


def spreadsheet_safe(value: object) -> str:
    """The cell as text; one a spreadsheet would evaluate gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if _runs_as_formula(text) else text


def spreadsheet_unescape(cell: str) -> str:
    """The value `spreadsheet_safe` was given (for text cells)."""
    return cell[1:] if cell.startswith("'") and _runs_as_formula(cell[1:]) else cell

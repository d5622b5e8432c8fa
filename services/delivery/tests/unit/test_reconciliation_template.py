"""The monthly reconciliation the wallet sends to the finance list renders as a plain statement."""

from __future__ import annotations

from contracts.values import Channel
from services.delivery.templates import TemplateBook

PARAMS = {
    "month": "2030-02",
    "opening_points": "1200",
    "earned": "70",
    "refunded": "5",
    "burned": "300",
    "expired": "25",
    "adjusted_credit": "30",
    "adjusted_debit": "10",
    "adjusted_net": "20",
    "closing_points": "970",
    "reconciles": "yes",
}


def test_the_reconciliation_email_states_every_figure_of_the_month() -> None:
    rendered = TemplateBook().render_message("monthly_reconciliation", Channel.EMAIL, "en", PARAMS, "Finance")

    assert rendered.subject == "Orchard points reconciliation for 2030-02"
    assert rendered.html is not None
    for part in (rendered.text, rendered.html):
        for figure in ("1200", "70", "300", "25", "970", "yes"):
            assert figure in part
    assert "Closing liability:  970 points" in rendered.text

"""Charts: orders per hour by state, points earned and burned per day, deliveries by channel, each
from the figures a service answers."""

from __future__ import annotations

from datetime import UTC, datetime

from console import charts

NOW = datetime(2026, 12, 5, 14, 25, tzinfo=UTC)


def test_each_hour_of_the_order_services_figures_is_a_bar_labelled_by_its_utc_hour() -> None:
    hours = [
        {"hour": "2026-12-05T12:00:00Z", "pending": 0, "completed": 0, "cancelled": 1, "total": 1},
        {"hour": "2026-12-05T13:00:00Z", "pending": 0, "completed": 1, "cancelled": 0, "total": 1},
        {"hour": "2026-12-05T14:00:00+00:00", "pending": 2, "completed": 0, "cancelled": 0, "total": 2},
        {"hour": "not a time", "pending": 9},
    ]
    chart = charts.orders_per_hour(hours)
    assert [bar.label for bar in chart.bars] == ["12:00", "13:00", "14:00"]
    by_label = {bar.label: {s.series: s.value for s in bar.segments} for bar in chart.bars}
    assert by_label["14:00"] == {"pending": 2, "completed": 0, "cancelled": 0}
    assert by_label["13:00"]["completed"] == 1
    assert by_label["12:00"]["cancelled"] == 1
    assert sum(bar.total for bar in chart.bars) == 4


def test_the_longest_bar_spans_the_chart_and_the_others_are_in_proportion() -> None:
    chart = charts.stacked("t", ("a", "b"), ["x", "y"], {("x", "a"): 3, ("x", "b"): 1, ("y", "a"): 2})
    x, y = chart.bars
    assert sum(s.width for s in x.segments) == charts.BAR_SPAN
    assert sum(s.width for s in y.segments) == charts.BAR_SPAN / 2
    assert x.segments[1].x == x.segments[0].width  # stacked: b starts where a ends
    assert "x: a 3, b 1; y: a 2" in chart.description


def test_a_chart_without_any_value_is_empty() -> None:
    assert charts.orders_per_hour([]).empty
    assert charts.orders_per_hour([{"hour": "2026-12-05T14:00:00Z", "pending": 0}]).empty


def test_credits_are_earned_and_debits_burned_on_their_day() -> None:
    entries = [
        {"recorded_at": "2026-12-05T09:00:00+00:00", "direction": "credit", "amount": "500"},
        {"recorded_at": "2026-12-05T10:00:00+00:00", "direction": "debit", "amount": "120.5"},
        {"recorded_at": "2026-12-04T10:00:00+00:00", "direction": "credit", "amount": "50"},
        {"recorded_at": "2026-11-01T10:00:00+00:00", "direction": "credit", "amount": "999"},
    ]
    chart = charts.points_per_day(entries, NOW, days=14)
    by_label = {bar.label: {s.series: s.value for s in bar.segments} for bar in chart.bars}
    assert by_label["12-05"] == {"earned": 500, "burned": 120.5}
    assert by_label["12-04"] == {"earned": 50, "burned": 0}
    assert sum(bar.total for bar in chart.bars) == 670.5


def test_deliveries_per_channel_stand_sent_failed_or_pending_and_succeed_by_their_finished_share() -> None:
    channels = [
        {"channel": "email", "sent": 9, "failed": 1, "pending": 5},
        {"channel": "sms", "sent": 0, "failed": 2, "pending": 0},
        {"channel": None, "sent": 0, "failed": 0, "pending": 3},
    ]
    chart = charts.delivery_outcomes(channels)
    assert [(bar.label, bar.total) for bar in chart.bars] == [("email", 15), ("sms", 2), ("—", 3)]
    assert [s.series for s in chart.bars[0].segments] == ["sent", "failed", "pending"]
    assert charts.success_share(chart) == {"email": "90.0%", "sms": "0.0%", "—": "—"}


def test_a_chart_carries_its_figures_for_a_script_to_draw_the_same_bars() -> None:
    chart = charts.stacked("t", ("a", "b"), ["x", "y"], {("x", "a"): 3, ("y", "b"): 2}, {"b": "#000000"})
    assert chart.data == {
        "labels": ["x", "y"],
        "series": [
            {"name": "a", "colour": charts.PALETTE[0], "values": [3, 0]},
            {"name": "b", "colour": "#000000", "values": [0, 2]},
        ],
    }


def test_an_aggregates_rows_become_one_series_of_counts_in_their_order() -> None:
    rows = [{"value": "online", "records": 4}, {"value": None, "records": 1}]
    chart = charts.counts("Per channel", rows, "redemptions", limit=5)
    assert [(bar.label, bar.total) for bar in chart.bars] == [("online", 4), ("—", 1)]
    assert chart.description == "Per channel. online: redemptions 4; —: redemptions 1"

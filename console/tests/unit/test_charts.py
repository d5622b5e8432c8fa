"""Charts: orders per hour by state, points earned and burned per day, deliveries by channel."""

from __future__ import annotations

from datetime import UTC, datetime

from console import charts

NOW = datetime(2026, 12, 5, 14, 25, tzinfo=UTC)


def test_orders_are_counted_in_their_creation_hour_by_state_and_older_ones_are_left_out() -> None:
    orders = [
        {"created_at": "2026-12-05T14:01:00+00:00", "state": "pending"},
        {"created_at": "2026-12-05T14:59:00Z", "state": "pending"},
        {"created_at": "2026-12-05T13:30:00+00:00", "state": "completed"},
        {"created_at": "2026-12-05T13:10:00+01:00", "state": "cancelled"},  # 12:10 UTC
        {"created_at": "2026-12-04T14:59:00+00:00", "state": "completed"},  # 24 h ago: outside
        {"created_at": "not a time", "state": "pending"},
    ]
    chart = charts.orders_per_hour(orders, NOW, hours=24)
    assert len(chart.bars) == 24
    assert chart.bars[-1].label == "14:00"
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
    assert charts.orders_per_hour([], NOW).empty


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


def test_delivery_attempts_per_channel_come_from_the_services_counters() -> None:
    metrics = "\n".join(
        [
            "# HELP orchard_delivery_attempts_total Delivery attempts by outcome",
            'orchard_delivery_attempts_total{channel="email",outcome="succeeded"} 9.0',
            'orchard_delivery_attempts_total{channel="email",outcome="failed"} 1.0',
            'orchard_delivery_attempts_total{channel="sms",outcome="failed"} 2.0',
            'orchard_delivery_attempts_created{channel="sms",outcome="failed"} 1.7e9',
            'orchard_http_requests_total{route="/x"} 4.0',
        ]
    )
    chart = charts.delivery_outcomes(metrics)
    assert [bar.label for bar in chart.bars] == ["email", "sms"]
    assert charts.success_share(chart) == {"email": "90.0%", "sms": "0.0%"}


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

"""The whole-pipeline bench's own arithmetic: percentiles, lag, messages per order, the raw-baseline
ceiling and its ratios, latency drift, CPU sums, the rate list, the profile summary, the channel mix and
the report's target lines. No I/O beyond a temp dir; nothing starts Kafka or PostgreSQL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.pipeline_drive import SMS_EVERY, channel_of, record_fields, submitted_messages
from bench.pipeline_profile import hot_spots
from bench.pipeline_report import phase_for, render, steady_phases
from bench.pipeline_stats import (
    Ceiling,
    costliest,
    cpu_totals,
    group_lag,
    latency_summary,
    messages_per_order,
    parse_rates,
    per_second,
    percentile,
    process_kind,
    ratio_table,
    slope_per_s,
    steady_latency,
)
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordSubmitted


def test_percentiles_are_nearest_rank_values_that_were_observed() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([0.3], 99) == 0.3
    assert math.isnan(percentile([], 50))


def test_a_percentile_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=200))
def test_latency_percentiles_are_ordered_and_bounded_by_the_max(latencies: list[float]) -> None:
    summary = latency_summary(latencies)
    assert summary["count"] == len(latencies)
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["max_ms"] == max(latencies) * 1000


def test_lag_sums_end_minus_committed_and_counts_uncommitted_partitions_from_zero() -> None:
    end = {("t", 0): 10, ("t", 1): 5, ("t", 2): 7}
    committed = {("t", 0): 4, ("t", 1): 5}
    assert group_lag(committed, end) == 6 + 0 + 7


def test_a_committed_offset_past_a_stale_end_is_no_negative_lag() -> None:
    assert group_lag({("t", 0): 12}, {("t", 0): 10}) == 0


def test_per_second_buckets_count_events_by_whole_second_from_the_start() -> None:
    assert per_second([10.0, 10.5, 11.2, 12.9, 13.0, 9.9], 10.0, 13.0) == [2, 1, 1]


def test_messages_per_order_is_each_topics_growth_divided_by_the_orders() -> None:
    before = {"a": 100, "b": 0, "c": 7}
    after = {"a": 300, "b": 50, "c": 7}
    assert messages_per_order(before, after, 100) == {"a": 2.0, "b": 0.5}
    with pytest.raises(ValueError, match="at least one order"):
        messages_per_order(before, after, 0)


def test_the_ceiling_is_the_scarcer_raw_part_divided_by_the_hops_per_order() -> None:
    ceiling = Ceiling(kafka_msgs_per_s=9000, pg_commits_per_s=1800, hops_per_order=9)
    assert ceiling.kafka_orders_per_s == 1000
    assert ceiling.pg_orders_per_s == 200
    assert ceiling.orders_per_s == 200
    assert ceiling.bound_by == "postgres"
    ratios = ratio_table(100, ceiling)
    assert ratios["orders_per_s / raw_baseline_ceiling"] == pytest.approx(0.5)
    assert ratios["orders_per_s / kafka_ceiling_orders_per_s"] == pytest.approx(0.1)
    assert ratios["orders_per_s / raw_kafka_msgs_per_s"] == pytest.approx(100 / 9000)
    assert ratios["orders_per_s / raw_pg_commits_per_s"] == pytest.approx(100 / 1800)
    assert Ceiling(1000, 100_000, 10).bound_by == "kafka"


def test_hot_spots_share_self_time_by_leaf_and_inclusive_time_of_our_code() -> None:
    collapsed = "\n".join(
        [
            "MainThread;run (asyncio/base_events.py:10);handle (/repo/chassis/consumer.py:200);"
            "loads (json/__init__.py:346) 30",
            "MainThread;run (asyncio/base_events.py:10);handle (/repo/chassis/consumer.py:201);"
            "execute (asyncpg/connection.py:5) 10",
            "MainThread;run (asyncio/base_events.py:10);send (services/delivery/sending.py:9) 60",
            "MainThread;<module> (services/delivery/__main__.py:3);EpollSelector.select (selectors.py:1) 500",
            "garbage line",
        ]
    )
    spots = hot_spots(collapsed)
    assert spots["self"][0] == ("send (services/delivery/sending.py)", 0.6)  # the idle select left out
    assert ("loads (json/__init__.py)", 0.3) in spots["self"]
    inclusive = dict(spots["ours_inclusive"])
    assert inclusive["handle (/repo/chassis/consumer.py)"] == pytest.approx(0.4)  # lines merged
    assert "run (asyncio/base_events.py)" not in inclusive
    assert hot_spots("") == {"self": [], "ours_inclusive": [], "socket_sends_by_caller": [], "samples": []}


def test_socket_sends_are_charged_to_the_nearest_function_of_ours() -> None:
    collapsed = "\n".join(
        [
            "T;on_batch (chassis/consumer.py:1);insert_orders (services/order/repository.py:5);"
            "Connection._do_execute (asyncpg/connection.py:9);"
            "_SelectorSocketTransport.write (asyncio/selector_events.py:1) 30",
            "T;on_batch (chassis/consumer.py:1);validate (services/order/intake.py:5) 70",
        ]
    )
    assert hot_spots(collapsed)["socket_sends_by_caller"] == [
        ("insert_orders (services/order/repository.py)", 0.3)
    ]


def test_one_allocation_in_five_asks_for_sms_and_each_has_its_own_recipient() -> None:
    channels = [channel_of(i) for i in range(10 * SMS_EVERY)]
    assert channels.count("sms") == 10
    assert channels.count("email") == 40
    emails = {record_fields("r", "c", i)["email"] for i in range(1000)}
    phones = {record_fields("r", "c", i)["phone"] for i in range(1000)}
    assert len(emails) == len(phones) == 1000


def test_submitted_messages_are_valid_ipa_record_submitted_envelopes() -> None:
    messages = submitted_messages("run1", "bench-burst-x", 5, 3)
    assert [ref for ref, _ in messages] == ["run1-5", "run1-6", "run1-7"]
    for ref, raw in messages:
        envelope = Envelope.decode(raw, IpaRecordSubmitted, expected_type="ipa.record_submitted")
        assert envelope.data.external_ref == ref
        assert envelope.data.campaign_id == "bench-burst-x"


def _steady(rate: float, p50_ms: float, p99_ms: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "rate": rate,
        "duration_s": 60.0,
        "orders": round(rate * 60),
        "offered_per_s": rate,
        "completed_per_s": rate,
        "latency": {"count": 10, "p50_ms": p50_ms, "p95_ms": p99_ms, "p99_ms": p99_ms, "max_ms": p99_ms},
        "latency_drift": {
            "slope_ms_per_s": 2.5,
            "p50_first_ms": 40.0,
            "p50_last_ms": 190.0,
            "window_s": 10.0,
        },
        "cpu_s": {name: ms * rate * 60 / 1000 for name, ms in cpu.items()},
        "cpu_ms_per_order": cpu,
    }


def _record() -> dict[str, Any]:
    latency = {"count": 10, "p50_ms": 50.0, "p95_ms": 90.0, "p99_ms": 600.0, "max_ms": 700.0}
    return {
        "system": "own",
        "mix": "80% e-mail, 20% SMS",
        "machine": {"cpus": 2, "load_average_end": (1.0, 1.0, 1.0)},
        "system_env": {"ORCHARD_DELIVERY_EMAIL_RATE": "100000"},
        "burst": {
            "orders": 1000,
            "seconds": 2.0,
            "orders_per_s": 500.0,
            "submit_seconds": 0.1,
            "latency": latency,
            "messages_per_order": {"ipa.record_submitted": 1.0},
            "kafka_messages_per_order": 9.0,
            "db_commits_per_order": 3.0,
            "cpu_s": {"order": 1.0, "kafka": 0.5, "postgres": 1.5, "smtp-sink": 2.0},
            "cpu_ms_per_order": {"order": 1.0, "kafka": 0.5, "postgres": 1.5, "smtp-sink": 2.0},
            "hot_spots": {},
        },
        "steady": [
            _steady(100.0, 120.0, 600.0, {"order": 1.0, "kafka": 1.0, "postgres": 1.0, "smtp-sink": 5.0}),
            _steady(300.0, 300.0, 900.0, {"order": 2.0, "kafka": 1.0, "postgres": 2.0, "fake-provider": 1.0}),
        ],
        "csv": {
            "rows": 100_000,
            "csv_bytes": 10**7,
            "upload_s": 1.0,
            "validated_s": 9.0,
            "accepted_s": 12.0,
            "delivered_s": 200.0,
        },
        "baselines": {
            "messages": 5000,
            "message_bytes": 548.0,
            "kafka_msgs_per_s": 9000.0,
            "pg_commits_per_s_1": 500.0,
            "pg_commits_per_s_8": 1800.0,
        },
        "ceiling": {
            "hops_per_order": 9.0,
            "kafka_orders_per_s": 1000.0,
            "pg_orders_per_s": 200.0,
            "orders_per_s": 200.0,
            "bound_by": "postgres",
        },
        "ratios": ratio_table(500.0, Ceiling(9000, 1800, 9)),
        "peak_rss_bytes": {"order": 160 * 10**6, "order-2": 90 * 10**6, "kafka": 400 * 10**6},
        "final_rss_bytes": {"order": 140 * 10**6, "order-2": 80 * 10**6, "kafka": 390 * 10**6},
    }


def test_the_report_prints_each_target_beside_its_figure_without_judging_by_anything_else() -> None:
    text = render(_record())
    assert (
        "burst ≥600 orders/s end to end (this machine): 500 (for 1000 orders, not 20,000) — NOT met" in text
    )
    assert "burst ≥1000 orders/s end to end (on the way): 500 (for 1000 orders, not 20,000) — NOT met" in text
    assert "≥0.5 of the raw baseline ceiling: 2.50 — met" in text
    assert "p50 ≤150 ms at 100 orders/s: 120 ms — met" in text
    assert "p99 ≤500 ms at 100 orders/s: 600 ms — NOT met" in text
    assert "p99 ≤1000 ms at 300 orders/s: 900 ms — met" in text
    assert "latency flat at 100 orders/s: slope +2.5 ms/s" in text
    assert "latency flat at 300 orders/s: slope +2.5 ms/s" in text
    assert "CSV validated ≤10 s: 9.0 s — met" in text
    assert "CSV delivered ≤120 s: 200.0 s — NOT met" in text
    assert "largest peak order 160 MB — NOT met (largest at the end: order 140 MB)" in text  # no JVM


def test_cpu_per_order_is_judged_over_orchard_kafka_and_postgres_with_the_sinks_apart() -> None:
    text = render(_record())
    assert "CPU ≤4 ms/order, Orchard + Kafka + Postgres (burst): 3.00 ms — met (sinks apart: 2.00 ms)" in text
    assert "Orchard + Kafka + Postgres (100/s): 3.00 ms — met (sinks apart: 5.00 ms)" in text
    assert "Orchard + Kafka + Postgres (300/s): 5.00 ms — NOT met (sinks apart: 1.00 ms)" in text


def test_the_process_table_has_a_column_per_phase_the_sums_and_the_rss_at_the_end() -> None:
    lines = render(_record()).splitlines()
    header = next(line for line in lines if line.startswith("process"))
    assert header.split() == ["process", "burst", "burst", "100/s", "300/s", "peak", "end"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(("order ", "kafka "))}
    assert rows["order"] == ["1.0", "1.00", "1.00", "2.00", "160", "140"]
    orchard_sum = next(line for line in lines if "sum, Orchard + Kafka + Postgres" in line)
    assert orchard_sum.split()[-4:] == ["3.0", "3.00", "3.00", "5.00"]
    sinks_sum = next(line for line in lines if "sum, local sinks" in line)
    assert sinks_sum.split()[-4:] == ["2.0", "2.00", "5.00", "1.00"]
    assert next(line for line in lines if line.startswith("fake-provider")).split()[1:4] == ["-", "-", "-"]


def test_a_record_from_before_the_rate_list_still_renders() -> None:
    record = _record()
    old = record["steady"][0]
    record["steady"] = {k: v for k, v in old.items() if k in ("rate", "duration_s", "orders", "latency")} | {
        "offered_per_s": 100.0,
        "completed_per_s": 99.0,
    }
    for key in ("final_rss_bytes",):
        del record[key]
    assert steady_phases(record) == [record["steady"]]
    text = render(record)
    assert "p99 ≤500 ms at 100 orders/s: 600 ms — NOT met" in text
    assert "latency flat" not in text
    assert steady_phases({}) == []


def test_a_steady_target_measured_at_another_rate_says_so() -> None:
    record = _record()
    record["steady"] = [record["steady"][0] | {"rate": 50.0}]
    text = render(record)
    assert "p99 ≤500 ms at 100 orders/s: 600 ms (measured at 50/s, not 100/s) — NOT met" in text
    assert "p99 ≤1000 ms at 300 orders/s: 600 ms (measured at 50/s, not 300/s) — met" in text
    assert phase_for([], 100.0) is None
    assert phase_for([{"rate": 50.0}, {"rate": 280.0}], 300.0) == {"rate": 280.0}


def test_rates_are_a_comma_separated_list_of_positive_numbers() -> None:
    assert parse_rates("100,300") == [100.0, 300.0]
    assert parse_rates(" 50 , 12.5") == [50.0, 12.5]
    for bad in ("", "100,", "abc", "0", "-5", "nan", "inf"):
        with pytest.raises(ValueError, match="rate"):
            parse_rates(bad)


def test_the_cli_takes_a_rate_list_and_quick_keeps_one_short_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.pipeline import _arguments

    monkeypatch.setattr("sys.argv", ["pipeline", "--rate", "50,100", "--duration", "10"])
    assert _arguments().rate == [50.0, 100.0]
    monkeypatch.setattr("sys.argv", ["pipeline"])
    assert _arguments().rate == [100.0, 300.0]
    monkeypatch.setattr("sys.argv", ["pipeline", "--quick"])
    assert (_arguments().rate, _arguments().duration) == ([50.0], 10.0)
    monkeypatch.setattr("sys.argv", ["pipeline", "--rate", "100,x"])
    with pytest.raises(SystemExit):
        _arguments()


def test_the_latency_slope_is_the_least_squares_slope_in_ms_per_s() -> None:
    assert slope_per_s([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)
    assert slope_per_s([(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)]) == pytest.approx(0.0)
    assert math.isnan(slope_per_s([(1.0, 1.0)]))
    assert math.isnan(slope_per_s([(1.0, 1.0), (1.0, 2.0)]))
    sent = {f"r{i}": 100.0 + i * 0.5 for i in range(120)}  # 2/s for 60 s
    completed = {ref: t + 0.1 + 0.002 * (t - 100.0) for ref, t in sent.items()}  # +2 ms per s
    drift = steady_latency(sent, completed)
    assert drift["slope_ms_per_s"] == pytest.approx(2.0)
    assert drift["p50_first_ms"] == pytest.approx(100 + 2 * 4.5)  # t 0..9.5 s: the 10th of 20 at 4.5 s
    assert drift["p50_last_ms"] == pytest.approx(100 + 2 * 54.5)  # t 50..59.5 s, the newest ten seconds
    assert math.isnan(steady_latency({}, {})["slope_ms_per_s"])


def test_a_phase_shorter_than_two_windows_compares_its_two_halves() -> None:
    sent = {f"r{i}": float(i) for i in range(11)}  # 0..10 s
    completed = {ref: t + (0.1 if t < 5 else 0.3) for ref, t in sent.items()}
    drift = steady_latency(sent, completed)
    assert drift["window_s"] == 5.0
    assert (drift["p50_first_ms"], drift["p50_last_ms"]) == pytest.approx((100.0, 300.0))
    one = steady_latency({"r": 1.0}, {"r": 1.5})
    assert (one["window_s"], one["p50_first_ms"], one["p50_last_ms"]) == (10.0, 500.0, 500.0)


@given(
    st.floats(min_value=-100, max_value=100, allow_nan=False),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    # Sample times at least a millisecond apart, as a clock gives them (not 1e-300 s apart).
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=50, unique=True),
)
def test_the_slope_of_points_on_a_line_is_the_lines_slope(a: float, b: float, ms: list[int]) -> None:
    ts = [m / 1000 for m in ms]
    assert slope_per_s([(t, a * t + b) for t in ts]) == pytest.approx(a, abs=1e-6)


def test_cpu_sums_split_orchard_kafka_and_postgres_from_the_local_sinks() -> None:
    ms = {"order": 1.0, "order-2": 0.5, "delivery": 2.0, "kafka": 1.0, "postgres": 3.0}
    ms |= {"smtp-sink": 1.5, "fake-provider": 0.25}
    assert cpu_totals(ms) == {"orchard": 7.5, "sink": 1.75}
    assert [process_kind(n) for n in ("wallet-3", "postgres", "smtp-sink")] == ["orchard", "orchard", "sink"]
    assert costliest({"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.5, "kafka": 9.0}, ["a", "b", "c", "d"]) == [
        "b",
        "c",
        "a",
    ]


def test_cpu_figures_are_the_difference_between_two_readings_per_order() -> None:
    from bench.pipeline import cpu_figures

    figures = cpu_figures(
        {"order": 10.0, "smtp-sink": 1.0}, {"order": 12.0, "smtp-sink": 1.5, "kafka": 1.0}, 500
    )
    assert figures["cpu_s"] == {"order": 2.0, "smtp-sink": 0.5, "kafka": 1.0}
    assert figures["cpu_ms_per_order"] == {"order": 4.0, "smtp-sink": 1.0, "kafka": 2.0}
    assert figures["cpu_ms_per_order_totals"] == {"orchard": 6.0, "sink": 1.0}


def test_flame_graphs_are_those_of_the_three_costliest_profiled_processes(tmp_path: Path) -> None:
    from bench.pipeline import _profile_figures

    profiles = {}
    for name in ("order", "voucher", "delivery", "wallet"):
        (tmp_path / f"{name}.collapsed.txt").write_text("T;f (services/x.py:1) 3\n")
        (tmp_path / f"{name}.svg").write_text("<svg/>")
        profiles[name] = {"raw": tmp_path / f"{name}.collapsed.txt", "flamegraph": tmp_path / f"{name}.svg"}
    cpu = {"order": 2.0, "voucher": 1.0, "delivery": 5.0, "wallet": 3.0, "postgres": 9.0}
    figures = _profile_figures(profiles, cpu)
    assert list(figures["flame_graphs"]) == ["delivery", "wallet", "order"]
    assert figures["flame_graphs"]["delivery"] == str(tmp_path / "delivery.svg")
    assert set(figures["hot_spots"]) == set(profiles)
    record = _record()
    record["burst"] |= figures | {"cpu_s": cpu}
    assert f"delivery            5.0 s  {tmp_path / 'delivery.svg'}" in render(record)


def test_the_ceiling_uses_the_mean_of_the_baselines_before_and_after_and_keeps_both() -> None:
    from bench.pipeline import mean_baselines

    before = {
        "messages": 5000,
        "kafka_msgs_per_s": 8000.0,
        "pg_commits_per_s_1": 100.0,
        "pg_commits_per_s_8": 600.0,
    }
    after = before | {"kafka_msgs_per_s": 4000.0, "pg_commits_per_s_8": 200.0}
    mean = mean_baselines(before, after)
    assert (mean["kafka_msgs_per_s"], mean["pg_commits_per_s_1"], mean["pg_commits_per_s_8"]) == (
        6000,
        100,
        400,
    )
    assert mean["before"] == before
    assert mean["after"] == after
    record = _record()
    record["baselines"] = mean | {"message_bytes": 548.0}
    assert "aiokafka produce+consume              6000      8000      4000  msgs/s" in render(record)

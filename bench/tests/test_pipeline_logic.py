"""The whole-pipeline bench's own arithmetic: percentiles, lag, messages per order, the raw-baseline
ceiling and its ratios, the profile summary and the channel mix. No I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.pipeline_drive import SMS_EVERY, channel_of, record_fields, submitted_messages
from bench.pipeline_profile import hot_spots
from bench.pipeline_report import render
from bench.pipeline_stats import (
    Ceiling,
    group_lag,
    latency_summary,
    messages_per_order,
    per_second,
    percentile,
    ratio_table,
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


def _record() -> dict[str, object]:
    latency = {"count": 10, "p50_ms": 50.0, "p95_ms": 90.0, "p99_ms": 600.0, "max_ms": 700.0}
    return {
        "system": "own",
        "mix": "80% e-mail, 20% SMS",
        "machine": {"cpus": 2, "load_average_end": (1.0, 1.0, 1.0)},
        "system_env": {"ORCHARD_EMAIL_RATE": "100000"},
        "burst": {
            "orders": 1000,
            "seconds": 2.0,
            "orders_per_s": 500.0,
            "submit_seconds": 0.1,
            "latency": latency,
            "messages_per_order": {"ipa.record_submitted": 1.0},
            "kafka_messages_per_order": 9.0,
            "db_commits_per_order": 3.0,
            "cpu_s": {"order": 1.0},
            "cpu_ms_per_order": {"order": 1.0},
            "hot_spots": {},
        },
        "steady": {
            "rate": 100.0,
            "duration_s": 60.0,
            "orders": 6000,
            "offered_per_s": 100.0,
            "completed_per_s": 100.0,
            "latency": latency,
        },
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
    }


def test_the_report_prints_each_target_beside_its_figure_without_judging_by_anything_else() -> None:
    text = render(_record())
    assert "≥1000 orders/s end to end: 500 — NOT met" in text
    assert "≥0.5 of the raw baseline ceiling: 2.50 — met" in text
    assert "p99 ≤500 ms at 100 orders/s: 600 ms — NOT met" in text
    assert "CSV validated ≤10 s: 9.0 s — met" in text
    assert "CSV delivered ≤120 s: 200.0 s — NOT met" in text
    assert "largest order 160 MB — NOT met" in text  # Kafka's JVM is no service


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

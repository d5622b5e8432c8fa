"""The whole-pipeline bench's arithmetic, with no I/O: percentiles, consumer lag, throughput over time,
and the raw-baseline ceiling our throughput is divided by (see bench/README.md, "The raw baseline")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: a value that was actually observed."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds, and how many latencies they summarise."""
    return {
        "count": len(latencies_s),
        "p50_ms": percentile(latencies_s, 50) * 1000,
        "p95_ms": percentile(latencies_s, 95) * 1000,
        "p99_ms": percentile(latencies_s, 99) * 1000,
        "max_ms": max(latencies_s, default=math.nan) * 1000,
    }


def group_lag(committed: Mapping[tuple[str, int], int], end: Mapping[tuple[str, int], int]) -> int:
    """Messages a consumer group has still to process: for each of its partitions, the end offset less
    the committed one. A partition the group has not committed yet counts from offset 0 (the services
    start at `earliest`); a committed offset past the end (a stale end) counts as nothing."""
    return sum(max(0, end_offset - committed.get(tp, 0)) for tp, end_offset in end.items())


def per_second(times_s: Iterable[float], start_s: float, end_s: float) -> list[int]:
    """How many events fell in each whole second from `start_s`; events outside [start, end) are left out."""
    buckets = [0] * max(1, math.ceil(end_s - start_s))
    for t in times_s:
        i = math.floor(t - start_s)
        if 0 <= i < len(buckets):
            buckets[i] += 1
    return buckets


def messages_per_order(before: Mapping[str, int], after: Mapping[str, int], orders: int) -> dict[str, float]:
    """Messages each topic gained per order between two readings of its end offsets (topics that gained none
    are left out)."""
    if orders < 1:
        raise ValueError("at least one order is needed")
    gained = {t: after.get(t, 0) - before.get(t, 0) for t in after}
    return {t: n / orders for t, n in sorted(gained.items()) if n > 0}


@dataclass(frozen=True)
class Ceiling:
    """The raw-baseline ceiling for orders/s: every order is M Kafka messages, each produced by one
    committed state change, so with nothing of ours in between an order cannot go faster than
    M raw produce+consume round trips or M raw single-row commits, whichever is scarcer."""

    kafka_msgs_per_s: float
    pg_commits_per_s: float
    hops_per_order: float

    @property
    def kafka_orders_per_s(self) -> float:
        return self.kafka_msgs_per_s / self.hops_per_order

    @property
    def pg_orders_per_s(self) -> float:
        return self.pg_commits_per_s / self.hops_per_order

    @property
    def orders_per_s(self) -> float:
        return min(self.kafka_orders_per_s, self.pg_orders_per_s)

    @property
    def bound_by(self) -> str:
        return "postgres" if self.pg_orders_per_s <= self.kafka_orders_per_s else "kafka"


def ratio_table(orders_per_s: float, ceiling: Ceiling) -> dict[str, float]:
    """Our end-to-end orders/s against each raw part and against the ceiling (the ≥0.5 target)."""
    return {
        "orders_per_s / raw_kafka_msgs_per_s": orders_per_s / ceiling.kafka_msgs_per_s,
        "orders_per_s / raw_pg_commits_per_s": orders_per_s / ceiling.pg_commits_per_s,
        "orders_per_s / kafka_ceiling_orders_per_s": orders_per_s / ceiling.kafka_orders_per_s,
        "orders_per_s / pg_ceiling_orders_per_s": orders_per_s / ceiling.pg_orders_per_s,
        "orders_per_s / raw_baseline_ceiling": orders_per_s / ceiling.orders_per_s,
    }

"""The whole-pipeline bench's arithmetic, with no I/O: percentiles, consumer lag, throughput over time,
latency drift, CPU per order by kind of process, and the raw-baseline ceiling our throughput is divided
by (see bench/README.md, "The raw baseline")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chassis.consumer_lag import group_lag as group_lag  # the bench reads lag as the ops API does

SERVICES = ("order", "voucher", "delivery", "wallet", "redemption", "support")
INFRA = ("kafka", "postgres")
EDGE_WINDOW_S = 10.0
"""The steady phases compare the p50 of the orders submitted in their first and last this many seconds."""


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


def parse_rates(text: str) -> list[float]:
    """`--rate 100,300`: the steady rates in the order given, each a finite number of orders/s above 0."""
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            raise ValueError(f"not a rate: {part.strip()!r}") from None
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"a rate is a number of orders/s above 0, not {part.strip()!r}")
        rates.append(rate)
    return rates


def slope_per_s(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of y against t, per unit of t; NaN with fewer than two distinct t."""
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread


def steady_latency(
    sent: Mapping[str, float], completed: Mapping[str, float], *, window_s: float = EDGE_WINDOW_S
) -> dict[str, float]:
    """Whether latency stays flat over a steady phase: the slope of each order's latency against its
    submission time (ms per s; a growing queue shows as a positive slope long before the percentiles
    move) and the p50 of the orders submitted in the phase's first and last `window_s` seconds (half the
    phase each when it is shorter than two windows, so that the two never share an order)."""
    points = sorted((sent[ref], completed[ref] - sent[ref]) for ref in sent)
    if not points:
        return {"slope_ms_per_s": math.nan, "p50_first_ms": math.nan, "p50_last_ms": math.nan}
    start, end = points[0][0], points[-1][0]
    window_s = min(window_s, (end - start) / 2) or window_s
    first = [latency for t, latency in points if t < start + window_s]
    last = [latency for t, latency in points if t > end - window_s]
    return {
        "slope_ms_per_s": 1000 * slope_per_s(points),
        "p50_first_ms": 1000 * percentile(first, 50),
        "p50_last_ms": 1000 * percentile(last, 50),
        "window_s": window_s,
    }


def is_service(name: str) -> bool:
    """An Orchard service process, replicas included (`order-2`)."""
    return name.split("-")[0] in SERVICES


def process_kind(name: str) -> str:
    """`orchard` for the services, Kafka and PostgreSQL (what an order costs us), `sink` for the rest:
    the local SMTP sink and fake SMS provider stand in for someone else's servers."""
    return "orchard" if is_service(name) or name in INFRA else "sink"


def cpu_totals(ms_per_order: Mapping[str, float]) -> dict[str, float]:
    """CPU ms per order summed over Orchard's processes with Kafka and PostgreSQL, and over the sinks."""
    totals = {"orchard": 0.0, "sink": 0.0}
    for name, ms in ms_per_order.items():
        totals[process_kind(name)] += ms
    return totals


def costliest(cpu_s: Mapping[str, float], among: Iterable[str], count: int = 3) -> list[str]:
    """The `count` processes of `among` that used the most CPU, costliest first."""
    return sorted((n for n in among if n in cpu_s), key=lambda n: -cpu_s[n])[:count]

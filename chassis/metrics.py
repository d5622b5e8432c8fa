"""Prometheus metrics the chassis records, and the `/metrics` exposition.

Metrics live in prometheus_client's default registry, defined once at import: every app created in
the process (tests build many) shares them instead of registering duplicates, and metrics other
chassis modules define (outbox, consumers) appear on the same `/metrics` page.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

HTTP_REQUESTS: Final = Counter(
    "orchard_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "orchard_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

JOB_RUNS: Final = Counter("orchard_job_runs_total", "Periodic job runs started by the leader", ["job"])
JOB_FAILURES: Final = Counter("orchard_job_failures_total", "Periodic job runs that raised", ["job"])
JOB_LEADER: Final = Gauge("orchard_job_leader", "1 while this process holds the job's leadership", ["job"])

EXPOSITION_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


def render_metrics(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The registry in Prometheus text exposition format."""
    return _generate_latest(registry)

"""One IPA record is one trace (DESIGN.md §5 "Traces"): from the order service's intake through the outbox
and Kafka to voucher, delivery and the read models, each hop a child of the one that caused it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from chassis.testing import wait_until
from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from deploy.traces import TraceSpan, read_spans, traces_about
from tests import pipeline as p
from tests.pipeline import RUN
from tests.system import System, running_system


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # Every trace recorded (the default records 1 in 20), and spans written within a fraction of a second.
    with running_system(
        env={"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    ) as running:
        yield running


def _consumer_spans(spans: list[TraceSpan]) -> list[TraceSpan]:
    return [span for span in spans if span.name.startswith("process ") and "batch" not in span.name]


async def test_one_ipa_record_is_one_trace_across_the_services_in_causal_order(system: System) -> None:
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "traces", codes=3)
        ref = f"trace-{RUN}"
        record = IpaRecordSubmitted.model_validate(p.record(campaign_id, ref, 1))
        await p.from_hris(system, record)

        async def completed() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) == 1

        await wait_until(completed, timeout=120, interval=0.5, what="the order completed")
        [placed] = await p.orders(order, campaign_id)
    traces_dir = system.config.var_dir / "traces"
    wanted = {"order", "voucher", "delivery", "wallet", "support"}

    def the_trace() -> list[TraceSpan]:
        found = traces_about(read_spans(traces_dir), ref)
        return next(iter(found.values()), [])

    async def every_service_recorded() -> bool:
        consumed = _consumer_spans(the_trace())
        return wanted <= {span.service for span in consumed} and any(
            s.service == "order" and s.name == f"process {Topics.DELIVERY_SUCCEEDED}" for s in consumed
        )

    await wait_until(every_service_recorded, timeout=60, interval=0.5, what="spans from every service")

    found = traces_about(read_spans(traces_dir), ref)
    assert len(found) == 1, "one record, one trace"
    spans = next(iter(found.values()))
    by_id = {span.span_id: span for span in spans}
    consumed = _consumer_spans(spans)
    [intake] = [
        s for s in consumed if s.service == "order" and s.name == f"process {Topics.IPA_RECORD_SUBMITTED}"
    ]
    assert intake.parent_id is None, "the record arrived without trace context: it starts the trace"
    # voucher may also handle the order's later changes; the first it handles is the issuance
    issuance = min((s for s in consumed if s.service == "voucher"), key=lambda s: s.start_ns)
    assert issuance.parent_id == intake.span_id, "voucher handles the order event its intake wrote"
    sending = [s for s in consumed if s.service == "delivery"]
    assert sending, "delivery handled the record's events"
    for span in consumed:
        if span is intake:
            continue
        parent = by_id.get(span.parent_id or "")
        assert parent is not None, f"{span.service} {span.name} has its parent in the trace"
        assert parent.start_ns <= span.start_ns, f"{span.service} {span.name} starts after its cause"
    assert placed["order_id"] in {s.attributes.get("messaging.kafka.message.key") for s in consumed}
    # The send happens later, in a delivery worker, yet stays in the trace: a child of the event that
    # made the delivery due, and the parent of the order's handling of delivery.succeeded.
    [send] = [s for s in spans if s.service == "delivery" and s.name.startswith("send ")]
    cause = by_id[send.parent_id or ""]
    assert cause.service == "delivery"
    assert cause in consumed
    [done] = [
        s for s in consumed if s.service == "order" and s.name == f"process {Topics.DELIVERY_SUCCEEDED}"
    ]
    assert done.parent_id == send.span_id

    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "deploy.cli", "trace", placed["order_id"]],
        env={**os.environ, "ORCHARD_VAR_DIR": str(system.config.var_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"trace {intake.trace_id}")
    for service in ("order", "voucher", "delivery"):
        assert f" {service} " in shown.stdout, service

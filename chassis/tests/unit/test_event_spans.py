"""Consumer spans (chassis/tracing.py): an event of an unrecorded trace costs no span of its own, yet
passes its trace on; an event of a recorded trace gets a recording child span."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import INVALID_SPAN, Span

from chassis import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def sdk_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK tracer whose spans follow their parent's decision (new roots not recorded)."""
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))


def _event_span(flags: str) -> Span:
    headers = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-{flags}".encode())]
    return tracing.start_event_span(topic="t", group="g", event_id="e1", key=b"k", headers=headers)


def test_an_event_of_an_unrecorded_trace_passes_the_trace_on_unrecorded() -> None:
    span = _event_span("00")
    assert not span.is_recording()
    with tracing.handling({"e1": span}):
        passed_on = tracing.trace_headers("e1")["traceparent"]
    assert passed_on == f"00-{TRACE_ID}-{PARENT_ID}-00"


def test_an_event_of_a_recorded_trace_gets_a_recording_child_span() -> None:
    span = _event_span("01")
    assert span.is_recording()
    assert format(span.get_span_context().trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID  # type: ignore[attr-defined]
    with tracing.handling({"e1": span}):
        passed_on = tracing.trace_headers("e1")["traceparent"]
    assert passed_on == f"00-{TRACE_ID}-{format(span.get_span_context().span_id, '016x')}-01"


def test_a_batch_of_unrecorded_events_gets_no_batch_span() -> None:
    assert tracing.batch_span("t", [_event_span("00"), _event_span("00")]) is INVALID_SPAN


def test_a_batch_with_a_recorded_event_gets_a_batch_span_linked_to_it() -> None:
    recorded = _event_span("01")
    batch = tracing.batch_span("t", [_event_span("00"), recorded])
    assert batch.is_recording()
    assert recorded.get_span_context() in [link.context for link in batch.links]  # type: ignore[attr-defined]

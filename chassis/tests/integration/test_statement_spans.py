"""Database statements are traced only inside a recorded span (chassis/tracing.py)."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from chassis.tracing import _statements_within_traces


@pytest.fixture
def recorded() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _statements_within_traces(instrumentor).instrument(tracer_provider=provider)
    try:
        yield provider, exporter
    finally:
        instrumentor.uninstrument()
        del instrumentor._do_execute  # back to the class's own wrapper


async def test_a_statement_outside_any_span_starts_no_trace_of_its_own(
    pool: asyncpg.Pool, recorded: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, exporter = recorded
    assert await pool.fetchval("SELECT 1") == 1
    assert exporter.get_finished_spans() == ()


async def test_a_statement_inside_a_recorded_span_is_its_child(
    pool: asyncpg.Pool, recorded: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = recorded
    with provider.get_tracer("test").start_as_current_span("handling") as handling:
        assert await pool.fetchval("SELECT 2") == 2
    statements = [s for s in exporter.get_finished_spans() if s.name == "SELECT"]
    assert len(statements) == 1
    assert statements[0].parent is not None
    assert statements[0].parent.span_id == handling.get_span_context().span_id

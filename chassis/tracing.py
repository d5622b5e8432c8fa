"""One trace per allocation (DESIGN.md §5 "Traces"): W3C trace context from HTTP through the outbox and
Kafka to every consumer.

- HTTP requests get a server span (FastAPI instrumentation); database statements get client spans.
- `add_to_outbox` stores the `traceparent` of the span that caused each event in the row's headers;
  the relay sends it as the Kafka header `traceparent`.
- Consumers open one span per handled event, a child of the `traceparent` it arrived with, with the
  topic, consumer group, event id and message key as attributes. Events written while handling it
  (`Envelope.caused`, so their `causation_id` is its event id) carry that span's context, also when a
  batch handler writes the events of many at once.

`configure_tracing` (called by `run_service`) installs the SDK when there is somewhere to send spans:
the standard `OTEL_*` variables choose the exporter (`OTEL_TRACES_EXPORTER=otlp`, endpoint, headers)
and the sampler (`OTEL_TRACES_SAMPLER`; without it 1 new trace in 20 is recorded, parent-based, which
keeps the cost per order small); in development spans are also
written as OTLP JSON lines to `<var>/traces/<service>.jsonl` (`orchard trace` reads them). Without
either, the API's no-op tracer is used and trace context is still passed along unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from chassis.settings import Settings

TRACER_NAME = "orchard"
TRACES_DIR = "traces"
_EXCLUDED_URLS = "health/live,health/ready,metrics"

# event_id -> the context of the span handling it, for the events its handler writes (see module doc).
_HANDLING: ContextVar[Mapping[str, otel_context.Context] | None] = ContextVar(
    "orchard_handling", default=None
)


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# --- producing: the outbox -------------------------------------------------------------------------


def trace_headers(causation_id: str | None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) for an event: its cause's handling span, else the current one."""
    handling = _HANDLING.get()
    parent = handling.get(causation_id) if handling is not None and causation_id else None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=parent)
    return carrier


# --- consuming -------------------------------------------------------------------------------------


def _header_carrier(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    carrier = {}
    for key, value in headers or ():
        if key in ("traceparent", "tracestate") and value is not None:
            carrier[key] = value.decode("latin-1")
    return carrier


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _unrecorded_parent(carrier: Mapping[str, str]) -> Span | None:
    """The context an event arrived with, as a span, when its trace is not recorded and children follow
    their parent's decision (the default sampler): no span of ours would record anything, so none is
    made (a sampling decision, ids and attributes per event and group cost more than the handling of
    some events). The event's effects carry the trace on unrecorded, as a child span would."""
    if not _PARENT_DECIDES:
        return None
    matched = _TRACEPARENT.fullmatch(carrier.get("traceparent", ""))
    if matched is None or int(matched[3], 16) & TraceFlags.SAMPLED:
        return None
    context = SpanContext(int(matched[1], 16), int(matched[2], 16), is_remote=True)
    return NonRecordingSpan(context) if context.is_valid else None


def start_event_span(
    *, topic: str, group: str, event_id: str, key: bytes | None, headers: Sequence[tuple[str, bytes]] | None
) -> Span:
    """A CONSUMER span for one event, child of the context it arrived with (not made current)."""
    carrier = _header_carrier(headers)
    unrecorded = _unrecorded_parent(carrier)
    if unrecorded is not None:
        return unrecorded
    parent = propagate.extract(carrier)
    attributes: dict[str, str] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "orchard.event_id": event_id,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    return tracer().start_span(
        f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )


@contextlib.contextmanager
def handling(spans: Mapping[str, Span], *, current: Span | None = None) -> Iterator[None]:
    """While events are handled: what they write carries their own span's context; `current` (one
    event's span, or a batch span) is the active span for the database spans meanwhile."""
    contexts = {event_id: trace.set_span_in_context(span) for event_id, span in spans.items()}
    token = _HANDLING.set(contexts)
    try:
        if current is None:
            yield
        else:
            with trace.use_span(current, end_on_exit=False):
                yield
    finally:
        _HANDLING.reset(token)


def batch_span(topic: str, spans: Sequence[Span]) -> Span:
    """A span for a batch handler's work, linked to each event's span and a child of the first that
    records, so that a recorded event's trace holds the work done for it; none when no event's span
    records (a root span would start a trace of its own, about nothing recorded)."""
    recorded = next((span for span in spans if span.is_recording()), None)
    if recorded is None:
        return INVALID_SPAN
    links = [Link(span.get_span_context()) for span in spans]
    return tracer().start_span(
        f"process batch {topic}",
        context=trace.set_span_in_context(recorded),
        kind=SpanKind.INTERNAL,
        links=links,
    )


@contextlib.contextmanager
def child_span(name: str, traceparent: str | None, attributes: Mapping[str, str | int]) -> Iterator[Span]:
    """A CLIENT span, current while the block runs, child of a `traceparent` kept from earlier (work
    a handler queued and a worker does later); a root span when there is none."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    span = tracer().start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=dict(attributes))
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span
    except BaseException as error:
        end_failed(span, error)
        raise
    span.end()


def end_failed(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


# --- setup -----------------------------------------------------------------------------------------

_configured = False
_lock = threading.Lock()
_PARENT_DECIDES = True
"""Whether a span's recording follows its parent's (the default sampler, and no SDK at all)."""


def _exporter_requested() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return exporter not in ("", "none")


def configure_tracing(settings: Settings) -> bool:
    """Install the SDK for this process (once) when spans have somewhere to go; True if installed."""
    global _configured
    with _lock:
        if _configured:
            return True
        to_file = settings.is_dev and os.environ.get("ORCHARD_TRACES_TO_FILE", "1") != "0"
        if not (to_file or _exporter_requested()):
            return False
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": f"orchard-{settings.service_name}"})
        provider = TracerProvider(resource=resource, sampler=_default_sampler())
        if _exporter_requested():
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
        if to_file:
            path = Path(settings.var_dir) / TRACES_DIR / f"{settings.service_name}.jsonl"
            provider.add_span_processor(BatchSpanProcessor(OtlpJsonLinesExporter(path)))
        trace.set_tracer_provider(provider)
        _statements_within_traces(AsyncPGInstrumentor()).instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
        _configured = True
        return True


def _statements_within_traces(instrumentor: Any) -> Any:
    """The asyncpg instrumentation, for statements run inside a recorded span only.

    Unwrapped, every statement pays for a span (a sampling decision, attributes, a context switch) even
    when nothing records it, and a statement outside any span (the relay's polling, a periodic job)
    starts a trace of its own, 1 in 20 of them recorded: lone database spans nobody asked for. About
    a tenth of a busy service's CPU went to that.
    """
    instrumented = instrumentor._do_execute

    async def execute_within_traces(func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not trace.get_current_span().is_recording():
            return await func(*args, **kwargs)
        return await instrumented(func, instance, args, kwargs)

    instrumentor._do_execute = execute_within_traces
    return instrumentor


DEFAULT_SAMPLE_RATIO = 0.05
"""Without OTEL_TRACES_SAMPLER: 1 in 20 new traces is recorded, and every span follows its parent's
decision, so a recorded allocation is recorded whole across the services."""


def _default_sampler() -> Any:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    global _PARENT_DECIDES
    chosen = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    _PARENT_DECIDES = not chosen or chosen.startswith("parentbased_")
    if chosen:
        return None  # the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG itself
    return ParentBased(TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))


def instrument_http(app: FastAPI) -> None:
    """Server spans for the app's requests (not for health and metrics), whatever provider is set."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=_EXCLUDED_URLS)


def shutdown_tracing() -> None:
    """Flush what the exporters hold (at the end of a drained shutdown)."""
    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def _otlp_exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout from the standard OTEL_* variables


class OtlpJsonLinesExporter(SpanExporter):
    """Writes each exported batch as one line of OTLP JSON (an ExportTraceServiceRequest, ids in hex),
    the format the OpenTelemetry Collector's file exporter writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        document = MessageToDict(encode_spans(spans))
        for resource in document.get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    _hex_ids(span)
                    for link in span.get("links", []):
                        _hex_ids(link)
        line = json.dumps(document, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:  # kept open: reopening it for every batch showed in profiles
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _hex_ids(item: dict[str, Any]) -> None:
    import base64

    for field in ("traceId", "spanId", "parentSpanId"):
        if item.get(field):
            item[field] = base64.b64decode(item[field]).hex()

"""`orchard trace <order_id | booking_id | external_ref>`: one allocation's trace, read from the OTLP JSON
lines the services write in development (`<var>/traces/<service>.jsonl`, see chassis/tracing.py), and
printed as a tree with each span's service, start offset and duration."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_ATTRIBUTE = "messaging.kafka.message.key"


@dataclass
class TraceSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, str]
    children: list[TraceSpan] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _attributes(items: Iterable[dict[str, Any]]) -> dict[str, str]:
    values = {}
    for item in items:
        value = item.get("value", {})
        values[item["key"]] = str(next(iter(value.values()), "")) if value else ""
    return values


def read_spans(traces_dir: Path) -> list[TraceSpan]:
    """Every span in the directory's `*.jsonl` files (each line an OTLP ExportTraceServiceRequest)."""
    spans = []
    for path in sorted(traces_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            for resource in json.loads(line).get("resourceSpans", []):
                service = _attributes(resource.get("resource", {}).get("attributes", [])).get(
                    "service.name", "?"
                )
                for scope in resource.get("scopeSpans", []):
                    for span in scope.get("spans", []):
                        spans.append(
                            TraceSpan(
                                trace_id=span["traceId"],
                                span_id=span["spanId"],
                                parent_id=span.get("parentSpanId") or None,
                                name=span.get("name", ""),
                                service=service.removeprefix("orchard-"),
                                start_ns=int(span.get("startTimeUnixNano", 0)),
                                end_ns=int(span.get("endTimeUnixNano", 0)),
                                attributes=_attributes(span.get("attributes", [])),
                            )
                        )
    return spans


def traces_about(spans: list[TraceSpan], ref: str) -> dict[str, list[TraceSpan]]:
    """The traces with a span about `ref` (an event keyed by it, or naming it in an attribute)."""
    wanted = {span.trace_id for span in spans if ref in span.attributes.values()}
    by_trace: dict[str, list[TraceSpan]] = {}
    for span in spans:
        if span.trace_id in wanted:
            by_trace.setdefault(span.trace_id, []).append(span)
    return by_trace


def tree(spans: list[TraceSpan]) -> list[TraceSpan]:
    """The roots of one trace's spans, each with its children in start order. A span whose parent was
    not recorded (sampled out, or from a process that exports elsewhere) counts as a root."""
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        span.children = []
    roots: list[TraceSpan] = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get(span.parent_id) if span.parent_id else None
        (parent.children if parent is not None else roots).append(span)
    return roots


def render(trace_id: str, spans: list[TraceSpan]) -> Iterator[str]:
    began = min(span.start_ns for span in spans)

    def lines(span: TraceSpan, depth: int) -> Iterator[str]:
        offset = (span.start_ns - began) / 1e6
        label = f"{'  ' * depth}{span.service:<11} {span.name:<45}"
        yield f"{label} +{offset:>8.1f} ms {span.duration_ms:>8.1f} ms"
        for child in span.children:
            yield from lines(child, depth + 1)

    yield f"trace {trace_id} ({len(spans)} spans)"
    for root in tree(spans):
        yield from lines(root, 1)

"""Charts drawn on the server as SVG (no script, readable by screen readers through their label):
stacked bars of counts per label and series, and the series that feed them. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

PALETTE = ("#1f6f43", "#9a3412", "#1d4ed8", "#6b21a8", "#a16207", "#374151")
GOOD, WAITING, BAD = "#1f6f43", "#b7791f", "#a4262c"
"""The colours of the console's badges: done or delivered, waiting, cancelled or failed."""
BAR_SPAN = 200.0
"""The width, in SVG units, of the longest bar of a chart."""


@dataclass(frozen=True)
class Segment:
    series: str
    value: float
    x: float
    width: float
    colour: str


@dataclass(frozen=True)
class StackedBar:
    label: str
    total: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class StackedChart:
    title: str
    series: tuple[tuple[str, str], ...]
    """Each series with its colour, in legend order."""
    bars: tuple[StackedBar, ...]

    @property
    def empty(self) -> bool:
        return not any(bar.total for bar in self.bars)

    @property
    def data(self) -> dict[str, Any]:
        """The chart's figures for a script to draw: labels, and each series with its values."""
        return {
            "labels": [bar.label for bar in self.bars],
            "series": [
                {
                    "name": name,
                    "colour": colour,
                    "values": [s.value for b in self.bars for s in b.segments if s.series == name],
                }
                for name, colour in self.series
            ],
        }

    @property
    def description(self) -> str:
        """The chart in words, for its accessible name."""
        parts = []
        for bar in self.bars:
            values = ", ".join(f"{s.series} {_number(s.value)}" for s in bar.segments if s.value)
            parts.append(f"{bar.label}: {values or 'none'}")
        return f"{self.title}. " + "; ".join(parts)


def stacked(
    title: str,
    series: Sequence[str],
    labels: Sequence[str],
    values: Mapping[tuple[str, str], float],
    colours: Mapping[str, str] | None = None,
) -> StackedChart:
    """Bars for `labels` in order, each stacked by `series`; `values[(label, series)]` (missing: 0).
    Series take the palette's colours in order unless `colours` names theirs."""
    colours = {name: (colours or {}).get(name) or PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    totals = {label: sum(values.get((label, s), 0) for s in series) for label in labels}
    longest = max(totals.values(), default=0)
    scale = BAR_SPAN / longest if longest else 0.0
    bars = []
    for label in labels:
        x = 0.0
        segments = []
        for name in series:
            value = values.get((label, name), 0)
            width = round(value * scale, 1)
            segments.append(Segment(name, value, round(x, 1), width, colours[name]))
            x += width
        bars.append(StackedBar(label, totals[label], tuple(segments)))
    return StackedChart(title, tuple((name, colours[name]) for name in series), tuple(bars))


def counts(title: str, rows: Iterable[Mapping[str, Any]], series: str, *, limit: int = 14) -> StackedChart:
    """One series of counts from an aggregate's rows (`value`, `records`), in the given order."""
    picked = [(str(row.get("value") or "—"), {series: row.get("records")}) for row in rows][:limit]
    return figures(title, picked, (series,))


def figures(
    title: str,
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    series: Sequence[str],
    colours: Mapping[str, str] | None = None,
) -> StackedChart:
    """One bar per labelled row of a service's figures, stacked by the row's value for each series."""
    picked = list(rows)
    values = {(label, name): float(row.get(name) or 0) for label, row in picked for name in series}
    return stacked(title, series, [label for label, _ in picked], values, colours)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _moment(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


ORDER_STATES = ("pending", "completed", "cancelled")


def orders_per_hour(hours: Iterable[Mapping[str, Any]]) -> StackedChart:
    """The order service's hourly figures (`GET /v1/orders/stats/hourly`: each hour's start and its
    count per state), one bar per hour labelled by its UTC hour, oldest first."""
    starts = ((_moment(hour.get("hour")), hour) for hour in hours)
    labelled = [(start.astimezone(UTC).strftime("%H:00"), hour) for start, hour in starts if start]
    colours = {"pending": WAITING, "completed": GOOD, "cancelled": BAD}
    return figures("Orders per hour by state (UTC)", labelled, ORDER_STATES, colours)


def _points(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def points_per_day(entries: Iterable[Mapping[str, Any]], today: datetime, days: int = 14) -> StackedChart:
    """Points earned (credits) and burned (debits) on each of the last `days` UTC days."""
    last = today.astimezone(UTC).date()
    dates = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    labels = [day.strftime("%m-%d") for day in dates]
    label_of = dict(zip(dates, labels, strict=True))
    sums: dict[tuple[str, str], float] = {}
    for entry in entries:
        recorded = _moment(entry.get("recorded_at"))
        if recorded is None or recorded.astimezone(UTC).date() not in label_of:
            continue
        series = "burned" if entry.get("direction") == "debit" else "earned"
        key = (label_of[recorded.astimezone(UTC).date()], series)
        sums[key] = sums.get(key, 0) + float(_points(entry.get("amount")))
    colours = {"earned": GOOD, "burned": WAITING}
    return stacked("Points earned and burned per day (UTC)", ("earned", "burned"), labels, sums, colours)


DELIVERY_STANDINGS = ("sent", "failed", "pending")


def delivery_outcomes(channels: Iterable[Mapping[str, Any]]) -> StackedChart:
    """Deliveries per channel by where they stand, from the delivery service's figures
    (`GET /v1/deliveries/stats`); a code still waiting for its recipient has no channel yet (`—`)."""
    labelled = [(str(row.get("channel") or "—"), row) for row in channels]
    colours = {"sent": GOOD, "failed": BAD, "pending": WAITING}
    return figures("Deliveries by channel", labelled, DELIVERY_STANDINGS, colours)


def success_share(chart: StackedChart) -> dict[str, str]:
    """Each channel's share of its finished deliveries that were sent, as a percentage text."""
    shares = {}
    for bar in chart.bars:
        by_standing = {s.series: s.value for s in bar.segments}
        finished = by_standing.get("sent", 0) + by_standing.get("failed", 0)
        shares[bar.label] = f"{100 * by_standing.get('sent', 0) / finished:.1f}%" if finished else "—"
    return shares

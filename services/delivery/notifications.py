"""The notifier: chosen events become lines queued per webhook target (Slack, Microsoft Teams) in the
handler's or worker's transaction; a leader-elected job posts each target's pending lines as one
message per round, summarising bursts ("312 deliveries failed in the last minute"), retrying failed
posts with backoff. Lines carry ids, states and counts: never contact details or codes."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import structlog

from chassis.db import Connection
from chassis.logging import redact_text
from contracts.approvals import ApprovalDecided, ApprovalRequested
from contracts.orders import OrderStateChanged
from contracts.support import SlaAlertKind, SupportSlaBreached
from contracts.values import Channel
from contracts.vouchers import VoucherStockLow

from .settings import DeliverySettings

log = structlog.get_logger(__name__)

ORDER_STATE = "order_state"
DELIVERY_FAILED = "delivery_failed"
STOCK_LOW = "stock_low"
SLA_BREACHED = "sla_breached"
WEBHOOK_DISABLED = "webhook_disabled"
APPROVAL = "approval"

BURST_NOUNS = {
    ORDER_STATE: "order state changes",
    DELIVERY_FAILED: "deliveries failed",
    STOCK_LOW: "low-stock alerts",
    SLA_BREACHED: "SLA breaches",
    WEBHOOK_DISABLED: "webhooks disabled",
    APPROVAL: "approvals requested or decided",
}
TITLES = {
    ORDER_STATE: "Order state changes",
    DELIVERY_FAILED: "Final delivery failures",
    STOCK_LOW: "Low voucher stock",
    SLA_BREACHED: "Support SLA breaches",
    WEBHOOK_DISABLED: "Webhooks disabled",
    APPROVAL: "Approvals",
}


async def _enqueue(
    conn: Connection, settings: DeliverySettings, kind: str, campaign_id: str | None, line: str
) -> int:
    return await _enqueue_many(conn, settings, kind, [(campaign_id, line)])


async def _enqueue_many(
    conn: Connection, settings: DeliverySettings, kind: str, lines: Sequence[tuple[str | None, str]]
) -> int:
    """(campaign_id, line) pairs of one kind, each queued for every webhook target the filters allow."""
    targets = list(settings.webhook_targets())
    if kind not in settings.notified_events or not targets:
        return 0
    chosen = settings.campaign_filter
    rows = [
        (target, kind, campaign_id, redact_text(line)[:500])
        for campaign_id, line in lines
        if campaign_id is None or not chosen or campaign_id in chosen
        for target in targets
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO notifications (target, kind, campaign_id, line) VALUES ($1, $2, $3, $4)", rows
        )
    return len(rows)


def _order_state_line(settings: DeliverySettings, data: OrderStateChanged) -> str | None:
    states = {data.state.value, *([data.fulfilment_status.value] if data.fulfilment_status else [])}
    if not states & settings.order_state_filter:
        return None
    shown = data.fulfilment_status.value if data.fulfilment_status else data.state.value
    line = f"Order {data.booking_id} (campaign {data.campaign_id}) is now {shown}"
    return line + f": {data.reason}" if data.reason else line


def posts_order_state(settings: DeliverySettings, data: OrderStateChanged) -> bool:
    """Whether this change of an order would be posted: a target is set, order states are notified,
    and the campaign and state filters let it through."""
    if ORDER_STATE not in settings.notified_events or not settings.webhook_targets():
        return False
    chosen = settings.campaign_filter
    if chosen and data.campaign_id not in chosen:
        return False
    return _order_state_line(settings, data) is not None


async def order_state_changed(conn: Connection, settings: DeliverySettings, data: OrderStateChanged) -> int:
    line = _order_state_line(settings, data)
    return 0 if line is None else await _enqueue(conn, settings, ORDER_STATE, data.campaign_id, line)


async def order_states_changed(
    conn: Connection, settings: DeliverySettings, changes: Sequence[OrderStateChanged]
) -> int:
    """`order_state_changed` for each in turn, the lines queued in one statement."""
    lines = [(d.campaign_id, _order_state_line(settings, d)) for d in changes]
    return await _enqueue_many(conn, settings, ORDER_STATE, [(c, li) for c, li in lines if li is not None])


async def delivery_failed(
    conn: Connection, settings: DeliverySettings, row: asyncpg.Record, channel: Channel, reason: str
) -> int:
    if row["kind"] == "message":
        line = (
            f"Message {row['template']} to member {row['member_id']} by {channel.value}"
            f" failed for good: {reason}"
        )
    else:
        line = (
            f"Delivery of order {row['booking_id']} (campaign {row['campaign_id']}) by {channel.value}"
            f" failed for good: {reason}"
        )
    return await _enqueue(conn, settings, DELIVERY_FAILED, row["campaign_id"], line)


async def stock_low(conn: Connection, settings: DeliverySettings, data: VoucherStockLow) -> int:
    line = f"Campaign {data.campaign_id} is low on codes: {data.available} left (threshold {data.threshold})"
    return await _enqueue(conn, settings, STOCK_LOW, data.campaign_id, line)


async def sla_breached(conn: Connection, settings: DeliverySettings, data: SupportSlaBreached) -> int:
    if data.kind is not SlaAlertKind.BREACH:
        return 0
    line = (
        f"Ticket {data.ticket_id} ({data.priority.value}, {data.category.value}) missed its "
        f"{data.target.value.replace('_', ' ')} target due {data.due_at:%Y-%m-%d %H:%M} UTC"
    )
    return await _enqueue(conn, settings, SLA_BREACHED, None, line)


async def approval_requested(conn: Connection, settings: DeliverySettings, data: ApprovalRequested) -> int:
    """Approvers are told what waits for them, who asked, and where to decide."""
    line = (
        f"Approval needed ({data.service}): {data.summary}, asked by {data.maker}"
        f"{f' ({data.reason})' if data.reason else ''}; decide at"
        f" POST /v1/approvals/{data.approval_id}/approve or /reject"
    )
    return await _enqueue(conn, settings, APPROVAL, None, line)


async def approval_decided(conn: Connection, settings: DeliverySettings, data: ApprovalDecided) -> int:
    line = (
        f"{data.decision.value.capitalize()} by {data.decided_by} ({data.service}): {data.summary},"
        f" asked by {data.maker}{f': {data.reason}' if data.reason else ''}"
    )
    return await _enqueue(conn, settings, APPROVAL, None, line)


async def webhook_disabled(
    conn: Connection, settings: DeliverySettings, webhook_id: uuid.UUID, url: str, reason: str
) -> int:
    host = urlsplit(url).hostname or "?"
    line = f"Webhook {webhook_id} ({host}) was disabled: {reason}"
    return await _enqueue(conn, settings, WEBHOOK_DISABLED, None, line)


def _window(first: datetime, last: datetime) -> str:
    span = last - first
    if span <= timedelta(minutes=1):
        return "in the last minute"
    minutes = int(span.total_seconds() // 60) + 1
    return f"in the last {minutes} minutes"


def summarise(
    rows: Sequence[asyncpg.Record | dict[str, Any]], burst_threshold: int
) -> list[tuple[str, list[str]]]:
    """(title, lines) per kind; a kind with more events than the threshold becomes one summary line."""
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    sections = []
    for kind, items in by_kind.items():
        if len(items) > burst_threshold:
            first = min(r["created_at"] for r in items)
            last = max(r["created_at"] for r in items)
            lines = [f"{len(items)} {BURST_NOUNS.get(kind, 'events')} {_window(first, last)}"]
            campaigns = sorted({r["campaign_id"] for r in items if r["campaign_id"]})
            if campaigns:
                shown = ", ".join(campaigns[:10]) + (" …" if len(campaigns) > 10 else "")
                lines.append(f"Campaigns: {shown}")
        else:
            lines = [r["line"] for r in items]
        sections.append((TITLES.get(kind, kind), lines))
    return sections


def slack_payload(sections: list[tuple[str, list[str]]]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for title, lines in sections:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": title[:150]}})
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {x}" for x in lines)[:3000]}}
        )
    summary = "; ".join(lines[0] for _, lines in sections)
    return {"text": f"Orchard: {summary}"[:3000], "blocks": blocks}


def teams_payload(sections: list[tuple[str, list[str]]]) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    for title, lines in sections:
        body.append({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True})
        body += [{"type": "TextBlock", "text": line, "wrap": True, "spacing": "Small"} for line in lines]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


PAYLOADS = {"slack": slack_payload, "teams": teams_payload}


class Notifier:
    """Posts each target's pending lines; run by a leader-elected periodic job, so one replica posts
    and a target gets at most one message per round (its rate limit)."""

    def __init__(self, settings: DeliverySettings, *, max_lines: int = 5000) -> None:
        self._settings = settings
        self._max_lines = max_lines
        self._client: httpx.AsyncClient | None = None

    async def post_pending(self, pool: asyncpg.Pool) -> int:
        posted = 0
        for target, url in self._settings.webhook_targets().items():
            posted += await self._post_target(pool, target, url)
        return posted

    async def _post_target(self, pool: asyncpg.Pool, target: str, url: str) -> int:
        rows = await pool.fetch(
            "SELECT id, kind, campaign_id, line, created_at, attempts FROM notifications"
            " WHERE target = $1 AND sent_at IS NULL AND next_attempt_at <= now() ORDER BY id LIMIT $2",
            target,
            self._max_lines,
        )
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        payload = PAYLOADS[target](summarise(rows, self._settings.notify_burst_threshold))
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        try:
            answer = await self._client.post(url, json=payload)
            ok = answer.status_code < 300
            problem = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, problem = False, type(exc).__name__
        if ok:
            await pool.execute("UPDATE notifications SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)
            return 1
        attempts = max(r["attempts"] for r in rows) + 1
        delay = min(300.0, 2.0**attempts)
        await pool.execute(
            "UPDATE notifications SET attempts = attempts + 1,"
            " next_attempt_at = now() + make_interval(secs => $2)"
            " WHERE id = ANY($1::bigint[])",
            ids,
            delay,
        )
        log.warning("notification_post_failed", target=target, problem=problem, retry_in_s=delay)
        return 0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

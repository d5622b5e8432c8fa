"""The notifier: chosen events become lines queued per webhook target (Slack, Microsoft Teams) in the
handler's or worker's transaction; a leader-elected job posts each target's pending lines as one
message per round, summarising bursts ("312 deliveries failed in the last minute"), retrying failed
posts with backoff. Lines carry ids, states and counts: never contact details or codes."""

from __future__ import annotations

import json
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
from contracts.campaigns import CampaignActivity, CampaignActivityKind
from contracts.orders import OrderStateChanged
from contracts.support import SlaAlertKind, SupportSlaBreached
from contracts.values import Channel
from contracts.vouchers import VoucherStockLow

from .codes import CodeVault
from .repository import campaign_routes as routes_repo
from .repository import notifications as notifications_repo
from .settings import DeliverySettings
from .webhooks.transport import WebhookClient

log = structlog.get_logger(__name__)

ORDER_STATE = "order_state"
DELIVERY_FAILED = "delivery_failed"
STOCK_LOW = "stock_low"
SLA_BREACHED = "sla_breached"
WEBHOOK_DISABLED = "webhook_disabled"
APPROVAL = "approval"
NEVER_SUMMARISED = frozenset({APPROVAL})
"""Each of these lines names what someone must act on (an approval to decide): a burst is posted whole."""
CAMPAIGN = "campaign"
CAMPAIGN_BUDGET = "campaign_budget"

ROUTABLE = frozenset({CAMPAIGN, CAMPAIGN_BUDGET, STOCK_LOW, DELIVERY_FAILED})
"""Kinds a campaign's own route can take (order state changes are not: too many, and not campaign news)."""

BURST_NOUNS = {
    ORDER_STATE: "order state changes",
    DELIVERY_FAILED: "deliveries failed",
    STOCK_LOW: "low-stock alerts",
    SLA_BREACHED: "SLA breaches",
    WEBHOOK_DISABLED: "webhooks disabled",
    APPROVAL: "approvals requested or decided",
    CAMPAIGN: "campaign changes",
    CAMPAIGN_BUDGET: "budget alerts",
}
TITLES = {
    ORDER_STATE: "Order state changes",
    DELIVERY_FAILED: "Final delivery failures",
    STOCK_LOW: "Low voucher stock",
    SLA_BREACHED: "Support SLA breaches",
    WEBHOOK_DISABLED: "Webhooks disabled",
    APPROVAL: "Approvals",
    CAMPAIGN: "Campaign activity",
    CAMPAIGN_BUDGET: "Campaign budgets",
}


async def _enqueue(
    conn: Connection, settings: DeliverySettings, kind: str, campaign_id: str | None, line: str
) -> int:
    return await _enqueue_many(conn, settings, kind, [(campaign_id, line)])


async def _enqueue_many(
    conn: Connection, settings: DeliverySettings, kind: str, lines: Sequence[tuple[str | None, str]]
) -> int:
    """(campaign_id, line) pairs of one kind, each queued for every default target the filters allow
    and, for a campaign with a route taking this kind, for the campaign's own channels (its owners, and
    for budget notices its approvers, mentioned); a route `only_here` keeps them off the defaults."""
    targets = list(settings.webhook_targets()) if kind in settings.notified_events else []
    routes: dict[str, routes_repo.CampaignRoute] = {}
    if kind in ROUTABLE:
        routes = await routes_repo.routes_of(conn, [c for c, _ in lines if c is not None])
    if not targets and not routes:
        return 0
    chosen = settings.campaign_filter
    rows: list[tuple[str, str, str | None, str]] = []
    for campaign_id, line in lines:
        route = routes.get(campaign_id) if campaign_id is not None else None
        if route is not None and kind in route.kinds:
            text = redact_text(line + _mentions(route, kind))[:500]
            rows += [(target, kind, campaign_id, text) for target in route.targets]
            if route.only_here:
                continue
        if campaign_id is None or not chosen or campaign_id in chosen:
            rows += [(target, kind, campaign_id, redact_text(line)[:500]) for target in targets]
    if rows:
        await notifications_repo.enqueue(conn, rows)
    return len(rows)


def _mentions(route: routes_repo.CampaignRoute, kind: str) -> str:
    people = list(route.owners)
    if kind == CAMPAIGN_BUDGET:
        people += [a for a in route.approvers if a not in people]
    return f" (cc {', '.join(people)})" if people else ""


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


ACTIVITY_LINES = {
    CampaignActivityKind.CODES_GENERATED: "{count} codes generated",
    CampaignActivityKind.CODES_IMPORTED: "{count} codes imported",
    CampaignActivityKind.CODES_RECOVERED: "{count} codes recovered from their orders",
    CampaignActivityKind.EXPIRY_EXTENDED: "expiry extended for {count} codes",
    CampaignActivityKind.BUDGET_NEARLY_SPENT: "budget nearly spent",
}


async def campaign_activity(conn: Connection, settings: DeliverySettings, data: CampaignActivity) -> int:
    """Codes generated, imported or recovered, expiry extended (kind `campaign`), budget nearly spent
    (kind `campaign_budget`, which also mentions the campaign's approvers)."""
    what = ACTIVITY_LINES[data.kind].format(count=data.count if data.count is not None else "some")
    line = f"Campaign {data.campaign_id}: {what}"
    if data.actor:
        line += f" by {data.actor}"
    if data.detail:
        line += f" ({data.detail})"
    kind = CAMPAIGN_BUDGET if data.kind is CampaignActivityKind.BUDGET_NEARLY_SPENT else CAMPAIGN
    return await _enqueue(conn, settings, kind, data.campaign_id, line)


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
        if len(items) > burst_threshold and kind not in NEVER_SUMMARISED:
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
    and a target gets at most one message per round (its rate limit). The default targets come from
    settings; a campaign's own channels from its route, posted to like webhooks (outside development
    only to public addresses, no redirects, bounded answers)."""

    def __init__(self, settings: DeliverySettings, *, max_lines: int = 5000) -> None:
        self._settings = settings
        self._max_lines = max_lines
        self._client: httpx.AsyncClient | None = None
        self._routes_client: WebhookClient | None = None
        self._vault = CodeVault(settings.code_key)

    async def post_pending(self, pool: asyncpg.Pool) -> int:
        posted = 0
        for target, url in self._settings.webhook_targets().items():
            posted += await self._post_target(pool, target, target, url)
        for target in await routes_repo.pending_route_targets(pool):
            campaign_id, kind = routes_repo.split_route_target(target) or ("", "")
            route = await routes_repo.get_route(pool, campaign_id)
            sealed = {"slack": route.slack_url, "teams": route.teams_url}.get(kind) if route else None
            if sealed is None or kind not in PAYLOADS:
                await routes_repo.drop_pending(pool, target)
                continue
            url = self._vault.open(sealed).get_secret_value()
            posted += await self._post_target(pool, target, kind, url)
        return posted

    async def _send(self, target: str, url: str, payload: dict[str, Any]) -> str | None:
        """None when the post was taken (2xx), else what went wrong."""
        if routes_repo.split_route_target(target) is not None:
            if self._routes_client is None:
                self._routes_client = WebhookClient(
                    public_only=not self._settings.is_dev, timeout_s=10.0, max_body=65536, max_connections=4
                )
            answer = await self._routes_client.post(
                url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
            )
            return answer.error
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        try:
            response = await self._client.post(url, json=payload)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if response.status_code < 300 else f"HTTP {response.status_code}"

    async def _post_target(self, pool: asyncpg.Pool, target: str, kind: str, url: str) -> int:
        rows = await notifications_repo.pending(pool, target, self._max_lines)
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        payload = PAYLOADS[kind](summarise(rows, self._settings.notify_burst_threshold))
        problem = await self._send(target, url, payload)
        if problem is None:
            await notifications_repo.mark_sent(pool, ids)
            return 1
        attempts = max(r["attempts"] for r in rows) + 1
        delay = min(300.0, 2.0**attempts)
        await notifications_repo.retry_later(pool, ids, delay)
        log.warning(
            "notification_post_failed", target=target.rsplit(":", 1)[-1], problem=problem, retry_in_s=delay
        )
        return 0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._routes_client is not None:
            await self._routes_client.close()
            self._routes_client = None

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chassis.testing import wait_until
from contracts.orders import OrderState
from contracts.support import SlaAlertKind, SlaTarget, SupportSlaBreached, TicketCategory, TicketPriority
from contracts.values import Channel
from contracts.vouchers import VoucherStockLow
from deploy.infra.net import free_port
from services.delivery.notifications import Notifier

from .conftest import request_for, state_changed, voucher_for


class Receiver:
    """A real HTTP server standing in for Slack's and Teams' incoming webhooks."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: dict[str, list[dict]] = {"slack": [], "teams": []}
        self.refused = 0
        self.fail_first = fail_first
        self.port = free_port()
        app = FastAPI()

        @app.post("/hook/{target}")
        async def hook(target: str, request: Request) -> JSONResponse:
            if self.refused < self.fail_first:
                self.refused += 1
                return JSONResponse({"error": "try later"}, status_code=503)
            self.posts[target].append(await request.json())
            return JSONResponse({"ok": True})

        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning", lifespan="off"))

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{target}"

    def slack_text(self) -> str:
        return json.dumps(self.posts["slack"])


@pytest.fixture
async def receiver():
    @contextlib.asynccontextmanager
    async def run(fail_first: int = 0):
        r = Receiver(fail_first)
        task = asyncio.create_task(r.server.serve())
        await wait_until(_started(r.server), what="the webhook receiver")
        try:
            yield r
        finally:
            r.server.should_exit = True
            await task

    return run


def _started(server: uvicorn.Server):
    async def check() -> bool:
        return server.started

    return check


def _notifying(receiver: Receiver, **extra):
    return {
        "ORCHARD_DELIVERY_NOTIFY_SLACK_URL": receiver.url("slack"),
        "ORCHARD_DELIVERY_NOTIFY_TEAMS_URL": receiver.url("teams"),
        "ORCHARD_DELIVERY_NOTIFY_INTERVAL": 0.5,
        "ORCHARD_DELIVERY_NOTIFY_BURST_THRESHOLD": 3,
        **extra,
    }


async def test_a_burst_of_final_failures_becomes_one_summary_without_contacts_or_codes(
    delivery_service, receiver
):
    async with receiver() as hooks:
        # The notifier's own round is an hour: the test runs one when the whole burst is recorded.
        service = await delivery_service(
            ORCHARD_DELIVERY_SMS_WORKERS=0, **_notifying(hooks, ORCHARD_DELIVERY_NOTIFY_INTERVAL=3600)
        )
        orders = [uuid.uuid4() for _ in range(5)]
        for order_id in orders:
            await service.publish(request_for(order_id, channel=Channel.SMS, phone="+15005550001"))
            await service.publish(voucher_for(order_id, code=f"SECRET-{order_id.hex[:6]}"))
        for order_id in orders:
            await service.wait_status(order_id, "queued")
        while await service.engine.run_once(Channel.SMS):
            pass
        notifier = Notifier(service.settings)
        try:
            assert await notifier.post_pending(service.pool) == 2
        finally:
            await notifier.close()

        slack = hooks.slack_text()
        teams = json.dumps(hooks.posts["teams"])
    assert "5 deliveries failed in the last minute" in slack
    assert "5 deliveries failed in the last minute" in teams
    post = next(p for p in hooks.posts["slack"] if "deliveries failed" in json.dumps(p))
    assert post["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Final delivery failures"},
    }
    card = hooks.posts["teams"][0]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    for secret in ["+15005550001", "SECRET-", "example.com"]:
        assert secret not in slack + teams


def _has(receiver: Receiver, text: str):
    async def check() -> bool:
        return text in receiver.slack_text()

    return check


async def test_order_state_changes_are_posted_when_they_pass_the_state_and_campaign_filters(
    delivery_service, receiver
):
    async with receiver() as hooks:
        service = await delivery_service(
            **_notifying(hooks, ORCHARD_DELIVERY_NOTIFY_CAMPAIGNS="camp-watched")
        )
        watched, ignored_campaign, ignored_state = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await service.publish(
            state_changed(watched, OrderState.CANCELLED, campaign_id="camp-watched", reason="policy change")
        )
        await service.publish(state_changed(ignored_campaign, OrderState.CANCELLED, campaign_id="camp-other"))
        await service.publish(state_changed(ignored_state, OrderState.COMPLETED, campaign_id="camp-watched"))
        await service.publish(VoucherStockLow(campaign_id="camp-watched", available=3, threshold=10))
        await service.publish(
            SupportSlaBreached(
                ticket_id="T-42",
                kind=SlaAlertKind.BREACH,
                priority=TicketPriority.HIGH,
                category=TicketCategory.MISSING_DELIVERY,
                target=SlaTarget.RESOLUTION,
                due_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
                breached_at=datetime(2026, 11, 23, 12, 0, 1, tzinfo=UTC),
            )
        )

        async def all_three() -> bool:
            text = hooks.slack_text()
            return all(s in text for s in ("is now cancelled", "low on codes", "T-42"))

        await wait_until(all_three, what="the three notifications")
        text = hooks.slack_text()
    assert (
        f"Order BK-{watched.hex[:10].upper()} (campaign camp-watched) is now cancelled: policy change" in text
    )
    assert ignored_campaign.hex[:10].upper() not in text
    assert ignored_state.hex[:10].upper() not in text
    assert "Campaign camp-watched is low on codes: 3 left (threshold 10)" in text
    assert "Ticket T-42 (high, missing_delivery) missed its resolution target" in text


async def test_a_refused_webhook_post_is_retried_until_it_goes_through(delivery_service, receiver):
    async with receiver(fail_first=2) as hooks:
        service = await delivery_service(**_notifying(hooks, ORCHARD_DELIVERY_NOTIFY_TEAMS_URL=""))
        await service.publish(VoucherStockLow(campaign_id="camp-retry", available=1, threshold=5))

        await wait_until(_has(hooks, "camp-retry"), timeout=30, what="the retried post")

    assert hooks.refused == 2

    async def nothing_pending() -> bool:  # the post is answered before the job commits `sent_at`
        return await service.pool.fetchval("SELECT count(*) FROM notifications WHERE sent_at IS NULL") == 0

    await wait_until(nothing_pending, timeout=30, what="the line to be marked sent")

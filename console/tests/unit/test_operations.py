"""The Operations screen: its view models over the services' ops answers, and its replay flow (a dry
run shown first, then the confirmed replay) against stand-in services."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from console.app import create_app
from console.screens import operations
from console.sessions import SessionStore
from console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(ORCHARD_ENV="dev", ORCHARD_OIDC_ISSUER="http://127.0.0.1:9/realms/orchard")
GROUP = "orchard.order.cancel-requests"


def consumers(*groups: tuple[str, str, list[tuple[int | None, int]]]) -> dict[str, Any]:
    return {
        "groups": [
            {
                "group": f"orchard.x.{name}",
                "subscription": name,
                "topic": topic,
                "lag": sum(max(0, end - (committed or 0)) for committed, end in partitions),
                "partitions": [
                    {"partition": i, "committed_offset": c, "end_offset": e}
                    for i, (c, e) in enumerate(partitions)
                ],
            }
            for name, topic, partitions in groups
        ]
    }


def test_lag_rows_put_the_groups_most_behind_first_with_each_partitions_offsets() -> None:
    rows = operations.lag_rows(
        {
            "order": consumers(("ipa", "ipa.record_submitted", [(3, 3), (None, 4)])),
            "voucher": consumers(("orders", "order.state_changed", [(10, 10)])),
            "wallet": None,
        }
    )
    assert [(r.service, r.subscription, r.lag) for r in rows] == [
        ("order", "ipa", 4),
        ("voucher", "orders", 0),
    ]
    assert rows[0].partitions == "0: 3/3, 1: -/4"


def test_the_lag_chart_shows_only_the_groups_behind_most_behind_first() -> None:
    rows = operations.lag_rows(
        {"order": consumers(("a", "t", [(0, 2)]), ("b", "t", [(0, 8)]), ("c", "t", [(3, 3)]))}
    )
    chart = operations.lag_chart(rows)
    assert [(bar.label, bar.total) for bar in chart.bars] == [("order b", 8), ("order a", 2)]
    assert chart.bars[0].segments[0].width == 4 * chart.bars[1].segments[0].width
    assert operations.lag_chart(operations.lag_rows({"order": consumers(("c", "t", [(3, 3)]))})).empty


def test_outbox_rows_show_the_oldest_wait_only_when_something_waits_and_a_silent_service() -> None:
    rows = operations.outbox_rows(
        {
            "order": {
                "unpublished": 2,
                "oldest_unpublished_age_s": 75.0,
                "parked": 1,
                "relay": {"holder": "h:1"},
            },
            "voucher": {
                "unpublished": 0,
                "oldest_unpublished_age_s": 0,
                "parked": 0,
                "relay": {"holder": None},
            },
            "wallet": None,
        }
    )
    assert [(r.service, r.unpublished, r.oldest, r.parked, r.relay) for r in rows] == [
        ("order", 2, "1.2 min", 1, "h:1"),
        ("voucher", 0, "—", 0, "no leader"),
        ("wallet", 0, "—", 0, "no answer"),
    ]
    assert not rows[2].answered


def letter(event_id: str | None, failed_at: str, **extra: Any) -> dict[str, Any]:
    return {
        "group": GROUP,
        "subscription": "cancel-requests",
        "original_topic": "order.cancel_requested",
        "event_id": event_id,
        "key": "k",
        "error_code": "contract_violation",
        "error": "1 contract error(s)",
        "attempts": 1,
        "failed_at": failed_at,
        **extra,
    }


def test_dead_letters_of_every_service_are_listed_newest_first_without_their_payload() -> None:
    rows = operations.dead_letter_rows(
        {
            "order": {"items": [letter("e-1", "2026-12-05T10:00:00+00:00", value="secret@example.com")]},
            "delivery": {"items": [letter(None, "2026-12-05T11:00:00+00:00")]},
            "wallet": None,
        }
    )
    assert [(r.service, r.event_id) for r in rows] == [("delivery", ""), ("order", "e-1")]
    assert "secret@example.com" not in repr(rows)
    assert rows[1].replayed == ""


def test_a_dead_letter_replayed_since_it_failed_says_when_and_by_whom() -> None:
    replayed = letter("e-1", "2026-12-05T10:00:00+00:00", replayed_at="2026-12-05T10:05:00+00:00")
    [row] = operations.dead_letter_rows({"order": {"items": [replayed | {"replayed_by": "ops-1"}]}})
    assert row.replayed.startswith("replayed 2026-12-05")
    assert row.replayed.endswith("by ops-1")


def test_a_replay_preview_counts_what_would_be_sent_and_offers_nothing_to_confirm_when_empty() -> None:
    answer = {"group": GROUP, "dlq_topic": "order.cancel_requested.dlq", "dry_run": True, "replayed": 1}
    preview = operations.replay_preview(answer | {"letters": [letter("e-1", "2026-12-05T10:00:00+00:00")]})
    assert preview.headline == f"1 dead letter would be replayed to {GROUP}"
    assert preview.count == 1
    assert preview.confirm == "Confirm: replay 1"
    assert any("order.cancel_requested for" in line for line in preview.details)
    empty = operations.replay_preview(answer | {"replayed": 0, "letters": []})
    assert (empty.count, empty.headline) == (0, f"Nothing to replay for {GROUP}")


def test_only_an_admin_or_approver_who_did_not_ask_may_decide_an_approval() -> None:
    pending = {
        "approval_id": "a-1",
        "kind": "orders.bulk_cancel",
        "summary": "cancel 400 orders",
        "maker": "ops:ops-1",
        "maker_sub": "ops-1",
        "status": "pending",
        "created_at": "2026-12-05T10:00:00+00:00",
    }
    answers = {"order": {"items": [pending, pending | {"approval_id": "a-2", "status": "approved"}]}}
    [as_approver] = operations.approval_rows(answers, "ops-2", ["ops", "approver"])
    [as_maker] = operations.approval_rows(answers, "ops-1", ["ops", "approver"])
    [as_ops] = operations.approval_rows(answers, "ops-2", ["ops"])
    assert as_approver.may_decide
    assert (as_maker.may_decide, as_maker.why_not) == (False, "you asked for it")
    assert (as_ops.may_decide, as_ops.why_not) == (False, "needs the approver role")


class StandIns:
    """The six services answering the ops routes; remembers every replay body it was sent."""

    def __init__(self) -> None:
        self.replays: list[dict[str, Any]] = []
        self.actions: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/ops/outbox/retry" or path.startswith("/v1/approvals/"):
            self.actions.append((path, json.loads(request.content)))
            return httpx.Response(
                200, json={"retried": [3, 4]} if "outbox" in path else {"status": "decided"}
            )
        if request.url.port != 8101 and path.startswith("/v1/ops/dlq"):
            return httpx.Response(200, json={"items": [], "total": 0, "next_offset": None})
        if path == "/v1/ops/dlq/replay":
            body = json.loads(request.content)
            self.replays.append(body)
            letters = [letter("e-1", "2026-12-05T10:00:00+00:00")]
            return httpx.Response(
                200,
                json={
                    "group": body["group"],
                    "dlq_topic": "order.cancel_requested.dlq",
                    "dry_run": body.get("dry_run", False),
                    "replayed": 1,
                    "letters": letters,
                },
            )
        if path == "/v1/ops/dlq":
            return httpx.Response(
                200, json={"items": [letter("e-1", "2026-12-05T10:00:00+00:00")], "total": 1}
            )
        if path == "/v1/ops/consumers":
            return httpx.Response(200, json=consumers(("ipa", "ipa.record_submitted", [(1, 5)])))
        if path == "/v1/ops/outbox":
            body = {"unpublished": 0, "oldest_unpublished_age_s": 0, "parked": 0, "relay": {"holder": "h"}}
            return httpx.Response(200, json=body)
        if path.startswith("/health"):
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(404, json={"title": "Not Found", "status": 404, "code": "not_found"})


Console = tuple[httpx.AsyncClient, StandIns]


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    app = create_app(SETTINGS)
    services = StandIns()
    async with app.router.lifespan_context(app):
        app.state.http = httpx.AsyncClient(transport=httpx.MockTransport(services))
        store: SessionStore = app.state.sessions
        session = {"access_token": "t", "expires_at": time.time() + 600, "sub": "ops-1", "roles": ["ops"]}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console"
        ) as client:
            client.cookies.set("orchard-console", store.put(None, session | {"csrf": "good"}))
            yield client, services


async def test_the_page_shows_lag_and_dead_letters_from_every_service(console: Console) -> None:
    client, _ = console
    page = await client.get("/operations")
    assert page.status_code == 200, page.text
    assert "ipa.record_submitted" in page.text
    assert 'data-testid="groups-behind"' in page.text
    assert "caught up</summary>" not in page.text
    assert 'aria-label="Consumer groups most behind. delivery ipa: messages behind 4;' in page.text
    assert "Replay e-1" in page.text
    assert "Nothing waits for approval." in page.text


async def test_a_replay_is_previewed_as_a_dry_run_and_sent_only_once_confirmed(console: Console) -> None:
    client, services = console
    form = {"csrf": "good", "service": "order", "group": GROUP, "event_id": "e-1"}
    preview = await client.post("/operations/dlq/replay", data=form)
    assert preview.status_code == 200, preview.text
    assert f"1 dead letter would be replayed to {GROUP}" in preview.text
    assert services.replays == [{"group": GROUP, "event_ids": ["e-1"], "dry_run": True}]

    done = await client.post("/operations/dlq/replay", data=form | {"confirm": "true"})
    assert done.status_code == 303
    assert services.replays[-1] == {"group": GROUP, "event_ids": ["e-1"]}
    assert f"Replayed 1 dead letter to {GROUP}." in (await client.get("/operations")).text


async def test_replaying_all_of_a_group_confirms_as_many_as_the_preview_counted(console: Console) -> None:
    client, services = console
    form = {"csrf": "good", "service": "order", "group": GROUP}
    preview = await client.post("/operations/dlq/replay", data=form)
    assert 'name="limit" value="1"' in preview.text
    await client.post("/operations/dlq/replay", data=form | {"confirm": "true", "limit": "1"})
    assert services.replays == [{"group": GROUP, "dry_run": True}, {"group": GROUP, "limit": 1}]


async def test_a_replay_without_the_sessions_csrf_token_calls_no_service(console: Console) -> None:
    client, services = console
    refused = await client.post(
        "/operations/dlq/replay",
        data={"csrf": "forged", "service": "order", "group": GROUP, "confirm": "true"},
    )
    assert refused.status_code == 403
    assert services.replays == []


async def test_parked_events_are_retried_and_the_count_flashed(console: Console) -> None:
    client, services = console
    done = await client.post("/operations/outbox/retry", data={"csrf": "good", "service": "wallet"})
    assert done.status_code == 303
    assert services.actions == [("/v1/ops/outbox/retry", {})]
    assert "wallet: 2 parked events sent back to the relay." in (await client.get("/operations")).text


async def test_an_approval_is_approved_as_is_and_rejected_with_its_reason(console: Console) -> None:
    client, services = console
    await client.post("/operations/approvals/voucher/a-1/approve", data={"csrf": "good"})
    await client.post("/operations/approvals/order/a-2/reject", data={"csrf": "good", "reason": "too many"})
    assert services.actions == [
        ("/v1/approvals/a-1/approve", {}),
        ("/v1/approvals/a-2/reject", {"reason": "too many"}),
    ]
    unknown = await client.post("/operations/approvals/nowhere/a-3/approve", data={"csrf": "good"})
    assert unknown.status_code == 422
    assert len(services.actions) == 2

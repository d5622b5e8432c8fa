"""A campaign's notices reach its own Slack/Teams channel, mentioning its owners (and its approvers on
budget notices), configured over HTTP; webhook URLs are never answered or audited."""

from __future__ import annotations

from chassis.testing import wait_until
from contracts.campaigns import CampaignActivity, CampaignActivityKind
from contracts.vouchers import VoucherStockLow

from .test_notifier import _has, _notifying, receiver

__all__ = ["receiver"]


async def _route(service, campaign_id: str, **body) -> dict:
    answer = await service.http.put(
        f"/v1/notifications/campaigns/{campaign_id}", json=body, headers=service.token("ops", "olga")
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _activity(service, campaign_id: str, kind: CampaignActivityKind, **fields) -> None:
    """What the voucher service tells of a campaign: codes generated, recovered, its budget…"""
    await service.publish(CampaignActivity(campaign_id=campaign_id, kind=kind, **fields))


async def test_a_campaigns_activity_reaches_its_own_channel_with_its_people_mentioned(
    delivery_service, receiver
):
    async with receiver() as defaults, receiver() as own:
        service = await delivery_service(**_notifying(defaults))
        route = await _route(
            service,
            "camp-routed",
            slack_url=own.url("slack"),
            owners=["@alice", "@bob"],
            approvers=["@paula"],
        )
        await _activity(
            service,
            "camp-routed",
            CampaignActivityKind.CODES_RECOVERED,
            count=12,
            actor="ops:olga",
            detail="employee left",
        )
        await _activity(
            service,
            "camp-routed",
            CampaignActivityKind.BUDGET_NEARLY_SPENT,
            detail="9,000 of 10,000 EUR used (90%)",
        )
        await service.publish(VoucherStockLow(campaign_id="camp-routed", available=3, threshold=10))
        await _activity(
            service, "camp-other", CampaignActivityKind.CODES_GENERATED, count=500, actor="ops:olga"
        )
        await wait_until(_has(own, "budget nearly spent"), what="the budget notice on the campaign's channel")
        await wait_until(_has(own, "low on codes"), what="the stock notice on the campaign's channel")
        await wait_until(
            _has(defaults, "camp-other: 500 codes generated"), what="the other campaign's notice"
        )

    assert (route["slack_host"], route["teams_host"]) == ("127.0.0.1", None)
    assert "hook" not in str(route), "the webhook URL (a secret) is never answered"
    mine = own.slack_text()
    assert (
        "Campaign camp-routed: 12 codes recovered from their orders by ops:olga (employee left)"
        " (cc @alice, @bob)" in mine
    )
    assert "budget nearly spent (9,000 of 10,000 EUR used (90%)) (cc @alice, @bob, @paula)" in mine
    assert "camp-other" not in mine, "a campaign's channel hears only of it"
    assert own.posts["teams"] == []
    shared = defaults.slack_text()
    assert "Campaign camp-routed: 12 codes recovered" in shared, "the default channel still hears of it"
    assert "@alice" not in shared


async def test_a_route_only_here_keeps_the_campaign_off_the_default_channel_and_can_be_removed(
    delivery_service, receiver
):
    async with receiver() as defaults, receiver() as own:
        service = await delivery_service(**_notifying(defaults))
        await _route(service, "camp-private", teams_url=own.url("teams"), kinds=["campaign"], only_here=True)
        await _activity(
            service,
            "camp-private",
            CampaignActivityKind.EXPIRY_EXTENDED,
            count=40,
            actor="ops:olga",
            detail="to 2027-03-31 00:00 UTC: season extended",
        )
        await _activity(service, "camp-marker", CampaignActivityKind.CODES_GENERATED, count=1)

        async def teams_heard() -> bool:
            return "expiry extended for 40 codes" in str(own.posts["teams"])

        await wait_until(teams_heard, what="the notice on the campaign's Teams channel")
        await wait_until(_has(defaults, "camp-marker"), what="a later notice on the default channel")
        ops = service.token("ops", "olga")
        shown = await service.http.get("/v1/notifications/campaigns/camp-private", headers=ops)
        listed = await service.http.get("/v1/notifications/campaigns", headers=ops)
        removed = await service.http.delete("/v1/notifications/campaigns/camp-private", headers=ops)
        gone = await service.http.get("/v1/notifications/campaigns/camp-private", headers=ops)
        audit = await service.pool.fetch(
            "SELECT action, details::text AS details FROM audit_log"
            " WHERE subject_id = 'camp-private' ORDER BY seq"
        )

    assert "camp-private" not in defaults.slack_text()
    assert shown.json()["kinds"] == ["campaign"]
    assert shown.json()["only_here"] is True
    assert "camp-private" in {r["campaign_id"] for r in listed.json()["items"]}
    assert removed.status_code == 204
    assert gone.status_code == 404
    assert [r["action"] for r in audit] == ["notifications.route_saved", "notifications.route_deleted"]
    assert all("/hook/" not in r["details"] for r in audit), "webhook URLs stay out of the audit log"


async def test_a_route_is_refused_without_a_channel_with_unknown_kinds_or_for_other_roles(delivery_service):
    service = await delivery_service()
    ops = service.token("ops", "olga")
    put = service.http.put
    url = "/v1/notifications/campaigns/camp-x"

    no_channel = await put(url, json={"owners": ["@alice"]}, headers=ops)
    unknown = await put(
        url, json={"slack_url": "https://hooks.example.com/x", "kinds": ["order_state"]}, headers=ops
    )
    bad_url = await put(url, json={"slack_url": "ftp://hooks.example.com/x"}, headers=ops)
    agent = await put(
        url, json={"slack_url": "https://hooks.example.com/x"}, headers=service.token("support_agent", "sam")
    )

    assert no_channel.status_code == 422
    assert no_channel.json()["errors"][0]["field"] == "body.slack_url"
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.kinds"
    assert bad_url.status_code == 422
    assert bad_url.json()["errors"][0]["field"] == "body.slack_url"
    assert agent.status_code == 403
    assert (await service.http.get(url, headers=ops)).status_code == 404

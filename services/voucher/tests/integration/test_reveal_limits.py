"""Reveals are rate-limited per actor (token sub), with one count shared by every replica."""

from __future__ import annotations

import asyncio

import httpx

from .conftest import auth


async def _clear_of_a_minute_boundary(pool) -> None:  # type: ignore[no-untyped-def]
    # The window is the clock minute: start early in one so the whole test runs inside it.
    second = await pool.fetchval("SELECT extract(second FROM now())::float8")
    if second > 45:
        await asyncio.sleep(61 - second)


async def test_reveals_past_the_limit_are_refused_429_on_every_replica_and_per_actor(start_voucher):
    voucher = await start_voucher(replicas=2, ORCHARD_VOUCHER_REVEALS_PER_MINUTE=3)
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 1)
    code_id = await voucher.pool.fetchval("SELECT code_id FROM codes")
    second = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=voucher.runtimes[1].http_app()), base_url="http://voucher"
    )
    await _clear_of_a_minute_boundary(voucher.pool)
    try:
        answers = []
        for client in (voucher.http, second, voucher.http):
            answers.append(
                await client.post(
                    f"/v1/codes/{code_id}/reveal",
                    json={"reason": "customer call"},
                    headers=auth("support_agent", "alice"),
                )
            )
        assert [a.status_code for a in answers] == [200, 200, 200]
        refused = await second.post(
            f"/v1/codes/{code_id}/reveal",
            json={"reason": "customer call"},
            headers=auth("support_agent", "alice"),
        )
        other_actor = await voucher.http.post(
            f"/v1/codes/{code_id}/reveal",
            json={"reason": "customer call"},
            headers=auth("support_agent", "bob"),
        )
    finally:
        await second.aclose()
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "too_many_reveals"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other_actor.status_code == 200
    audited = await voucher.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'code.revealed'")
    assert audited == 4


async def test_reveals_of_unknown_codes_count_against_the_limit(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_REVEALS_PER_MINUTE=2)
    await _clear_of_a_minute_boundary(voucher.pool)
    statuses = []
    for _ in range(3):
        answer = await voucher.http.post(
            "/v1/codes/00000000-0000-0000-0000-000000000000/reveal",
            json={"reason": "guessing"},
            headers=auth("admin", "prober"),
        )
        statuses.append(answer.status_code)
    assert statuses == [404, 404, 429]

"""Big code generations: chunked, off the event loop, capped per request, all or nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.voucher import codes
from services.voucher.service import build_vault
from services.voucher.settings import VoucherSettings

from .conftest import auth


async def test_a_generation_spanning_several_chunks_yields_exactly_count_unique_codes(
    start_voucher, monkeypatch
):
    voucher = await start_voucher(ORCHARD_VOUCHER_GENERATION_CHUNK=500)
    campaign = await voucher.create_campaign()
    draws: list[int] = []
    sealed = codes._Draw.sealed

    def counted(self, vault, count):  # type: ignore[no-untyped-def]
        draws.append(count)
        return sealed(self, vault, count)

    monkeypatch.setattr(codes._Draw, "sealed", counted)
    result = await voucher.generate(campaign, 2_300, length=8)
    assert result["generated"] == 2_300
    assert draws == [500, 500, 500, 500, 300]
    assert await voucher.pool.fetchval("SELECT count(*) FROM codes WHERE campaign_id = $1", campaign) == 2_300
    assert await voucher.pool.fetchval("SELECT count(DISTINCT lookup_hash) FROM codes") == 2_300
    view = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("auditor"))).json()
    assert view["code_counts"] == {"available": 2_300}


async def test_the_service_keeps_answering_while_codes_are_generated(start_voucher, monkeypatch):
    voucher = await start_voucher(ORCHARD_VOUCHER_GENERATION_CHUNK=1_000)
    campaign = await voucher.create_campaign()
    first_chunk_drawn = threading.Event()
    may_go_on = threading.Event()
    sealed = codes._Draw.sealed

    def gated(self, vault, count):  # type: ignore[no-untyped-def]
        # The second chunk waits until the test has been answered: had the generation held the event
        # loop, no other request could be served and this would never be released.
        if first_chunk_drawn.is_set():
            assert may_go_on.wait(timeout=60), "the other requests were never answered"
        first_chunk_drawn.set()
        return sealed(self, vault, count)

    monkeypatch.setattr(codes._Draw, "sealed", gated)
    ticks = 0

    async def probe() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    generation = asyncio.create_task(voucher.generate(campaign, 5_000, length=10))
    await asyncio.to_thread(first_chunk_drawn.wait, 60)
    live = await voucher.http.get("/health/live")
    view = await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("auditor"))
    assert live.status_code == 200
    assert view.status_code == 200
    assert not generation.done()
    # Codes written so far are not visible: the pool grows at commit, all at once.
    assert view.json()["code_counts"] == {}
    ticking = asyncio.create_task(probe())
    may_go_on.set()
    try:
        result = await generation
    finally:
        ticking.cancel()
    assert result["generated"] == 5_000
    assert ticks > 0, "the event loop never ran the probe while the remaining chunks were generated"


async def test_a_generation_over_the_cap_is_refused_naming_count(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_MAX_CODES_PER_REQUEST=100)
    campaign = await voucher.create_campaign()
    refused = await voucher.http.post(
        f"/v1/campaigns/{campaign}/codes/generate", json={"count": 101}, headers=auth("ops")
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["body.count"]
    assert await voucher.pool.fetchval("SELECT count(*) FROM codes") == 0
    assert (await voucher.generate(campaign, 100))["generated"] == 100


async def test_a_generation_failing_midway_leaves_no_codes(start_voucher, monkeypatch):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    vault = build_vault(VoucherSettings())
    sealed = codes._Draw.sealed
    calls = 0

    def failing_third_chunk(self, vault, count):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the machine ran out of something")
        return sealed(self, vault, count)

    monkeypatch.setattr(codes._Draw, "sealed", failing_third_chunk)
    with pytest.raises(RuntimeError):
        async with voucher.pool.acquire() as conn, conn.transaction():
            await codes.generate(
                conn, vault, campaign, count=250, length=10, prefix="", test=False, actor="t", chunk_size=100
            )
    assert calls == 3
    assert await voucher.pool.fetchval("SELECT count(*) FROM codes") == 0

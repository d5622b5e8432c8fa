"""An upload is received whole before the service takes a database connection for it; a download is
cut off once it runs past its time limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from .conftest import OrderService, voucher_record
from .test_ipa_batches import csv_text

ONE_CONNECTION = {"ORCHARD_DB_POOL_MIN": 1, "ORCHARD_DB_POOL_MAX": 1}


@pytest.mark.parametrize("order_service", [ONE_CONNECTION], indirect=True)
async def test_a_slowly_streamed_upload_holds_no_database_connection(order_service: OrderService) -> None:
    text = csv_text([voucher_record("spring"), voucher_record("spring")]).encode()
    half = len(text) // 2
    first_half_read = asyncio.Event()
    client_may_finish = asyncio.Event()

    async def slow_client() -> AsyncIterator[bytes]:
        yield text[:half]
        first_half_read.set()
        await client_may_finish.wait()
        yield text[half:]

    upload = asyncio.create_task(
        order_service.http.post(
            "/v1/ipa/batches",
            content=slow_client(),
            headers={**order_service.auth(), "Content-Type": "text/csv"},
        )
    )
    await first_half_read.wait()
    # The pool's only connection is free while the client is still sending: other requests answer.
    # (The bound only keeps a regression from hanging the suite.)
    listing = await asyncio.wait_for(
        order_service.http.get("/v1/ipa/batches", headers=order_service.auth()), timeout=60
    )
    assert listing.status_code == 200
    assert listing.json()["items"] == []
    assert not upload.done()
    client_may_finish.set()
    accepted = await upload
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["received"] == 2


@pytest.mark.parametrize("order_service", [ONE_CONNECTION], indirect=True)
async def test_a_multipart_upload_without_a_file_is_refused_before_any_database_work(
    order_service: OrderService,
) -> None:
    answer = await order_service.http.post(
        "/v1/ipa/batches",
        data={"other": "x"},
        files={"not_file": ("a.csv", b"x")},
        headers=order_service.auth(),
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "file_missing"
    assert await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches") == 0


@pytest.mark.parametrize("order_service", [{"ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S": 1}], indirect=True)
async def test_an_error_report_stuck_in_the_database_is_cut_off_after_the_download_timeout(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    batch = await order_service.finished_batch(
        (await order_service.upload_csv(csv_text([voucher_record(campaign, email="nope")]))).json()[
            "batch_id"
        ]
    )
    await order_service.assert_download_cut_off(
        f"/v1/ipa/batches/{batch['batch_id']}/errors.csv",
        table="ipa_batch_rows",
        query_like="%FROM ipa_batch_rows WHERE batch_id%",
        role="admin",
    )

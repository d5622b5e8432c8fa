"""The order export: finance reads orders, and a few thousand of them stream out as CSV or JSON lines
that match the table row for row, filtered like the listing, cut off past the download timeout."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime
from typing import Any

import pytest

from chassis.downloads import cell_text
from chassis.spreadsheet import spreadsheet_unescape
from services.order.repository import ORDER_COLUMN_NAMES, ORDER_COLUMNS

from .conftest import OrderService, voucher_record

BATCH = 1000


async def place_orders(service: OrderService, campaign_id: str, count: int, **overrides: Any) -> None:
    for start in range(0, count, BATCH):
        records = [voucher_record(campaign_id, **overrides) for _ in range(min(BATCH, count - start))]
        batch = await service.finished_batch(await service.upload_json(records))
        assert batch["status"] == "completed", batch


async def table(service: OrderService, where: str = "true", *args: Any) -> list[dict[str, str]]:
    rows = await service.pool.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE {where} ORDER BY created_at DESC, order_id DESC", *args
    )
    return [{column: cell_text(row[column]) for column in ORDER_COLUMN_NAMES} for row in rows]


def csv_rows(text: str) -> list[dict[str, str]]:
    return [{k: spreadsheet_unescape(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def jsonl_rows(text: str) -> list[dict[str, str]]:
    return [
        {k: cell_text(v) for k, v in json.loads(line).items()} for line in text.splitlines() if line.strip()
    ]


async def test_a_few_thousand_orders_export_as_csv_and_json_lines_matching_the_table(
    order_service: OrderService,
) -> None:
    spring, autumn = await order_service.campaign(), await order_service.campaign()
    await place_orders(order_service, spring, 2500)
    await place_orders(order_service, autumn, 500)

    as_csv = await order_service.http.get(
        "/v1/orders/export", params={"format": "csv"}, headers=order_service.auth("finance")
    )
    as_jsonl = await order_service.http.get(
        "/v1/orders/export",
        params={"format": "jsonl", "campaign_id": autumn, "sort": "-created_at"},
        headers=order_service.auth("auditor"),
    )

    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    assert as_csv.text.splitlines()[0] == ",".join(ORDER_COLUMN_NAMES)
    exported = csv_rows(as_csv.text)
    # The table may also hold an order another test's record on the shared topic made here: count ours.
    assert sum(r["campaign_id"] == spring for r in exported) == 2500
    assert sum(r["campaign_id"] == autumn for r in exported) == 500
    assert exported == await table(order_service)
    assert as_jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert jsonl_rows(as_jsonl.text) == await table(order_service, "campaign_id = $1", autumn)
    first = json.loads(as_jsonl.text.splitlines()[0])
    assert (first["needs_attention"], first["late_events"]) == (False, 0)


async def test_the_export_takes_the_listing_filters_and_sort(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    for _ in range(3):
        await place_orders(order_service, campaign, 10)
    member = (await table(order_service))[7]["member_id"]
    middle = datetime.fromisoformat((await table(order_service))[15]["created_at"])

    def export(**params: Any) -> Any:
        return order_service.http.get(
            "/v1/orders/export", params={"format": "csv", **params}, headers=order_service.auth("finance")
        )

    by_member = csv_rows((await export(member_id=member)).text)
    oldest_first = csv_rows((await export(sort="created_at", state="pending")).text)
    since = csv_rows((await export(created_from=middle.isoformat())).text)
    none = csv_rows((await export(state="cancelled")).text)
    everything = await table(order_service)
    expected_since = await table(order_service, "created_at >= $1::timestamptz", middle)
    cancelled = await order_service.http.post(
        f"/v1/orders/{by_member[0]['order_id']}/cancel",
        json={"reason": '=HYPERLINK("http://evil")'},
        headers=order_service.auth("ops"),
    )
    assert cancelled.status_code == 200, cancelled.text
    raw = (await export(state="cancelled")).text

    assert [r["member_id"] for r in by_member] == [member]
    assert oldest_first == list(reversed(everything))
    assert since == expected_since
    assert 0 < len(since) < len(everything)
    assert none == []
    assert [r["status_reason"] for r in csv_rows(raw)] == ['=HYPERLINK("http://evil")']
    assert "'=HYPERLINK" in raw


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xlsx"}, "query.format"),
        ({"state": "lost"}, "query.state"),
        ({"campaign_id": "a\x00b"}, "query.campaign_id"),
        ({"created_from": "2026-01-01T00:00:00"}, "query.created_from"),
        ({"sort": "amount"}, "query.sort"),
    ],
)
async def test_a_bad_export_filter_is_refused_naming_the_field(
    order_service: OrderService, params: dict[str, str], field: str
) -> None:
    response = await order_service.http.get(
        "/v1/orders/export", params=params, headers=order_service.auth("finance")
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_finance_reads_orders_and_members_and_partners_do_not(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    await place_orders(order_service, campaign, 1)
    order_id = (await table(order_service))[0]["order_id"]

    for path in ("/v1/orders", "/v1/orders/summary", f"/v1/orders/{order_id}", "/v1/orders/export"):
        assert (await order_service.http.get(path, headers=order_service.auth("finance"))).status_code == 200
        for role in ("member", "partner", "hris"):
            assert (await order_service.http.get(path, headers=order_service.auth(role))).status_code == 403


async def test_the_export_streams_row_by_row_while_its_cursor_reads_on(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    await place_orders(order_service, campaign, 3000)
    app = order_service.runtime.http_app()
    token = order_service.auth("finance")["Authorization"].encode()
    chunks: list[int] = []
    reading_when_first_sent: int | None = None

    async def export_reading() -> int:
        return int(
            await order_service.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL"
                " AND query LIKE 'SELECT order_id, booking_id%FROM orders%ORDER BY created_at DESC%'"
            )
        )

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:  # the client stays connected until the response ends
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal reading_when_first_sent
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(len(message["body"]))
            if len(chunks) == 1:
                reading_when_first_sent = await export_reading()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/orders/export",
        "raw_path": b"/v1/orders/export",
        "query_string": f"format=jsonl&campaign_id={campaign}".encode(),
        "root_path": "",
        "headers": [(b"host", b"order"), (b"authorization", token)],
        "client": ("127.0.0.1", 1),
        "server": ("order", 80),
    }
    await app(scope, receive, send)

    # One body message per order, the first sent while the export's transaction still reads the rest.
    assert len(chunks) == 3000
    assert reading_when_first_sent == 1
    assert await export_reading() == 0


@pytest.mark.parametrize("order_service", [{"ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S": 1}], indirect=True)
async def test_an_export_stuck_in_the_database_is_cut_off_after_the_download_timeout(
    order_service: OrderService,
) -> None:
    await order_service.assert_download_cut_off(
        "/v1/orders/export",
        table="orders",
        query_like="%FROM orders%ORDER BY created_at DESC%",
        role="finance",
    )
    answer = await order_service.http.get("/v1/orders/export", headers=order_service.auth("finance"))
    assert answer.status_code == 200

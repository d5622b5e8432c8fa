"""Streamed downloads are cut off, and logged, once they run past their time limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import APIRouter

from chassis.http import BoundedStreamingResponse, DownloadTimedOut, create_http_app
from chassis.settings import Settings

SETTINGS = Settings(ORCHARD_SERVICE="order")


def build_app(timeout_s: float) -> Any:
    router = APIRouter()

    @router.get("/v1/stuck.csv")
    async def stuck() -> BoundedStreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b"a,b\r\n"
            await asyncio.Event().wait()  # a query or a client that never moves on
            yield b"never\r\n"

        return BoundedStreamingResponse(lines(), timeout_s=timeout_s, media_type="text/csv")

    @router.get("/v1/quick.csv")
    async def quick() -> BoundedStreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"{i}\r\n".encode()

        return BoundedStreamingResponse(lines(), timeout_s=timeout_s, media_type="text/csv")

    return create_http_app(SETTINGS, title="downloads", readiness_checks={}, routers=[router])


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_download_past_its_time_limit_is_aborted_and_logged() -> None:
    async with client_for(build_app(timeout_s=0.2)) as client:
        with structlog.testing.capture_logs() as logs, pytest.raises(DownloadTimedOut):
            await client.get("/v1/stuck.csv")
    timed_out = [entry for entry in logs if entry["event"] == "download_timed_out"]
    assert timed_out == [
        {"event": "download_timed_out", "route": "/v1/stuck.csv", "timeout_s": 0.2, "log_level": "warning"}
    ]


async def test_a_download_within_its_time_limit_is_served_whole() -> None:
    async with client_for(build_app(timeout_s=30)) as client:
        answer = await client.get("/v1/quick.csv")
    assert answer.status_code == 200
    assert answer.text == "0\r\n1\r\n2\r\n"


def test_the_download_limit_defaults_to_five_minutes_and_is_set_from_the_environment() -> None:
    assert Settings().http_download_timeout_s == 300
    assert Settings(ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S="2.5").http_download_timeout_s == 2.5

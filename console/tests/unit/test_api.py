"""The console's client of the services' HTTP APIs: JSON lines read up to a cap, problems raised."""

from __future__ import annotations

import httpx
import pytest

from console.api import Api, ApiError
from console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(ORCHARD_ENV="dev", ORCHARD_ORDER_URL="http://order")


def _api(handler: httpx.MockTransport) -> Api:
    return Api(SETTINGS, httpx.AsyncClient(transport=handler), "token")


async def test_a_json_lines_download_is_read_up_to_its_cap_and_says_there_was_more() -> None:
    body = "".join(f'{{"n": {n}}}\n' for n in range(5))
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=body)

    found, more = await _api(httpx.MockTransport(answer)).lines(
        "order", "/v1/orders/export", {"format": "jsonl", "campaign_id": ""}, limit=3
    )
    assert (found, more) == ([{"n": 0}, {"n": 1}, {"n": 2}], True)
    assert seen[0].headers["authorization"] == "Bearer token"
    assert "campaign_id" not in seen[0].url.params  # blank filters are left out


async def test_a_download_within_its_cap_is_read_whole() -> None:
    api = _api(httpx.MockTransport(lambda _: httpx.Response(200, text='{"n": 1}\n\n')))
    assert await api.lines("order", "/x", {}, limit=3) == ([{"n": 1}], False)


async def test_a_refused_download_raises_the_services_problem() -> None:
    problem = {"code": "forbidden", "detail": "Not for you."}
    api = _api(httpx.MockTransport(lambda _: httpx.Response(403, json=problem)))
    with pytest.raises(ApiError) as refused:
        await api.lines("order", "/x", {}, limit=3)
    assert (refused.value.status, refused.value.detail) == (403, "Not for you.")

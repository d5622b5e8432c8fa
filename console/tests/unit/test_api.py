"""The console's client of the services' HTTP APIs: the person's token on every call, blank filters
left out, a service's problem raised as it answered it."""

from __future__ import annotations

import httpx
import pytest

from console.api import Api, ApiError
from console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(ORCHARD_ENV="dev", ORCHARD_ORDER_URL="http://order")


def _api(handler: httpx.MockTransport) -> Api:
    return Api(SETTINGS, httpx.AsyncClient(transport=handler), "token")


async def test_a_call_carries_the_persons_token_and_leaves_blank_filters_out() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"hours": []})

    found = await _api(httpx.MockTransport(answer)).get(
        "order", "/v1/orders/stats/hourly", {"campaign_id": "", "member_id": None, "from": "x"}
    )

    assert found == {"hours": []}
    assert seen[0].headers["authorization"] == "Bearer token"
    assert dict(seen[0].url.params) == {"from": "x"}


async def test_a_refusal_raises_the_services_problem() -> None:
    problem = {"code": "forbidden", "detail": "Not for you."}
    api = _api(httpx.MockTransport(lambda _: httpx.Response(403, json=problem)))

    with pytest.raises(ApiError) as refused:
        await api.get("order", "/x")

    assert (refused.value.status, refused.value.code, refused.value.detail) == (
        403,
        "forbidden",
        "Not for you.",
    )

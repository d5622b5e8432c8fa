"""Where webhooks may go: outside development never to loopback, private or link-local addresses — also
when a public-looking name resolves to one at send time — and never where a redirect points; answers
are read only up to a cap and within a timeout. Against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from deploy.infra.net import free_port
from services.delivery.settings import DeliverySettings
from services.delivery.webhooks.domain import AddressRefused, refused_address
from services.delivery.webhooks.transport import WebhookClient, check_destination, resolve

from .webhook_receiver import webhook_receiver


def production() -> DeliverySettings:
    return DeliverySettings(ORCHARD_ENV="production")


def client(*, public_only: bool, timeout_s: float = 2.0, max_body: int = 65536) -> WebhookClient:
    return WebhookClient(public_only=public_only, timeout_s=timeout_s, max_body=max_body, max_connections=4)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.20.30.40/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "http://hooks.example.com/hook",
    ],
)
async def test_outside_development_registering_a_local_private_or_plain_http_url_is_refused(url):
    settings = production()
    assert not settings.is_dev

    with pytest.raises(AddressRefused):
        await check_destination(url, dev=settings.is_dev)


async def test_outside_development_a_name_resolving_to_an_internal_address_is_refused_at_registration():
    name = socket.gethostname()  # this machine's own name: /etc/hosts points it at itself
    if not any(refused_address(a) for a in await resolve(name, 443)):
        pytest.skip(f"{name} resolves to a public address here")

    with pytest.raises(AddressRefused, match=f"{name} resolves to"):
        await check_destination(f"https://{name}/hook", dev=False)
    with pytest.raises(AddressRefused, match="loopback"):
        await check_destination("https://localhost.:8443/hook", dev=False)


async def test_outside_development_a_name_resolving_to_loopback_at_send_time_is_never_connected_to():
    async with webhook_receiver() as receiver:
        guarded = client(public_only=True)
        try:
            by_name = await guarded.post(f"http://localhost:{receiver.port}/hook", b"{}", {})
            by_address = await guarded.post(receiver.url(), b"{}", {})
        finally:
            await guarded.close()

    assert by_name.status_code is None
    assert by_name.error is not None
    assert by_name.error.startswith("refused: localhost resolves to")
    assert by_address.error is not None
    assert by_address.error.startswith("refused:")
    assert receiver.received == []


async def test_in_development_the_same_local_receiver_is_reached():
    async with webhook_receiver() as receiver:
        local = client(public_only=False)
        try:
            answer = await local.post(f"http://localhost:{receiver.port}/hook", b"{}", {})
        finally:
            await local.close()

    assert answer.status_code == 200
    assert len(receiver.received) == 1


async def test_a_redirect_is_a_failure_and_is_not_followed():
    async with webhook_receiver(lambda r: (302, 0.0) if r.path == "/moved" else (200, 0.0)) as receiver:
        local = client(public_only=False)
        try:
            answer = await local.post(receiver.url("/moved"), b"{}", {})
        finally:
            await local.close()

    assert answer.status_code == 302
    assert answer.error == "HTTP 302: redirects are not followed"
    assert [r.path for r in receiver.received] == ["/moved"]


async def test_an_endpoint_that_answers_too_slowly_is_a_timeout():
    async with webhook_receiver(lambda r: (200, 3.0)) as receiver:
        local = client(public_only=False, timeout_s=0.5)
        try:
            answer = await local.post(receiver.url(), b"{}", {})
        finally:
            await local.close()

    assert answer.status_code is None
    assert answer.error == "timed out after 0.5 s"


async def test_a_huge_answer_is_read_only_up_to_the_cap():
    port = free_port()
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(1600):
                writer.write(b"x" * 65536)
                await writer.drain()
                sent += 65536
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", port)
    local = client(public_only=False, max_body=65536)
    try:
        answer = await local.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
    finally:
        await local.close()
        server.close()

    assert answer.status_code == 200
    assert len(answer.body) == 65536
    assert sent < 104857600


async def test_outside_development_the_api_answers_a_refused_url_with_422_and_registers_nothing(
    delivery_service, monkeypatch
):
    service = await delivery_service()
    assert service.http is not None
    assert service.settings is not None
    monkeypatch.setattr(service.settings, "env", "production")  # the running service, as deployed

    answers = [
        await service.http.post(
            "/v1/webhooks", json={"url": url, "events": ["order.state_changed"]}, headers=service.token()
        )
        for url in ("https://127.0.0.1:8443/hook", "https://169.254.169.254/", "http://hooks.example.com/")
    ]

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert {a.json()["code"] for a in answers} == {"webhook_url_refused"}
    assert "loopback" in answers[0].json()["detail"]
    assert await service.pool.fetchval("SELECT count(*) FROM webhooks") == 0

import asyncio
import base64
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest

from deploy.sinks.provider import API_PREFIX, IDEMPOTENCY_HEADER
from deploy.sinks.testing import fake_provider, smtp_sink

ACCOUNT = "AC123"


def _email(to: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "rewards@orchard.test"
    message["To"] = to
    message["Subject"] = "Your voucher"
    message["Message-ID"] = message_id
    message.set_content("hello")
    return message


async def test_smtp_sink_saves_each_message_as_an_eml_file_once_per_message_id(tmp_path):
    async with smtp_sink(tmp_path / "mail") as sink:
        for message_id in ("<a@orchard>", "<b@orchard>", "<a@orchard>"):
            await aiosmtplib.send(_email("ann@example.com", message_id), hostname=sink.host, port=sink.port)

        saved = sink.messages()

    assert sorted(m["Message-ID"] for m in saved) == ["<a@orchard>", "<b@orchard>"]
    assert all(m["To"] == "ann@example.com" for m in saved)


async def test_smtp_sink_bounces_magic_addresses_for_good_and_defers_others(tmp_path):
    async with smtp_sink(tmp_path / "mail") as sink:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as bounced:
            await aiosmtplib.send(_email("bounce@example.com", "<c@o>"), hostname=sink.host, port=sink.port)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as deferred:
            await aiosmtplib.send(_email("tempfail@example.com", "<d@o>"), hostname=sink.host, port=sink.port)

        assert sink.messages() == []
    assert bounced.value.recipients[0].code == 550
    assert deferred.value.recipients[0].code == 451


def _auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:secret".encode()).decode()}


async def _send(client: httpx.AsyncClient, base: str, to: str, key: str | None = None) -> httpx.Response:
    headers = _auth() | ({IDEMPOTENCY_HEADER: key} if key else {})
    return await client.post(
        f"{base}{API_PREFIX}/{ACCOUNT}/Messages.json",
        data={"To": to, "From": "+15550001111", "Body": "Your code is X"},
        headers=headers,
    )


async def test_provider_saves_sms_and_whatsapp_and_a_repeated_idempotency_key_saves_nothing_new(tmp_path):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        first = await _send(client, provider.base_url, "+447700900123", key="k1")
        again = await _send(client, provider.base_url, "+447700900123", key="k1")
        whatsapp = await _send(client, provider.base_url, "whatsapp:+447700900123", key="k2")

        saved = provider.messages()

    assert first.status_code == 201
    assert again.json()["sid"] == first.json()["sid"]
    assert whatsapp.status_code == 201
    assert sorted(m["channel"] for m in saved) == ["sms", "whatsapp"]


@pytest.mark.parametrize(
    ("to", "status", "code"),
    [
        ("+15005550001", 400, 21211),
        ("whatsapp:+15005550002", 400, 63003),
        ("+15005550429", 429, 20429),
        ("+15005550500", 500, 20500),
        ("not-a-number", 400, 21211),
    ],
)
async def test_provider_fails_on_magic_numbers_like_twilio_does(tmp_path, to, status, code):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        answer = await _send(client, provider.base_url, to)

        assert provider.messages() == []
    assert answer.status_code == status
    assert answer.json()["code"] == code


async def test_provider_times_out_on_its_magic_number(tmp_path):
    async with (
        fake_provider(tmp_path / "messages", timeout_delay_s=2) as provider,
        httpx.AsyncClient(timeout=0.3) as client,
    ):
        with pytest.raises(httpx.TimeoutException):
            await _send(client, provider.base_url, "+15005550408")


async def test_provider_fails_as_told_for_the_next_messages_then_delivers(tmp_path):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        told = await client.post(
            f"{provider.base_url}/_control/failures",
            json={"to": "+447700900555", "mode": "server_error", "times": 2},
        )
        answers = [(await _send(client, provider.base_url, "+447700900555")).status_code for _ in range(3)]

        assert len(provider.messages()) == 1
    assert told.status_code == 201
    assert answers == [500, 500, 201]


async def test_provider_refuses_a_request_without_the_account_credentials(tmp_path):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        answer = await client.post(
            f"{provider.base_url}{API_PREFIX}/{ACCOUNT}/Messages.json",
            data={"To": "+447700900123", "From": "+15550001111", "Body": "x"},
        )
    assert answer.status_code == 401


async def test_provider_remembers_idempotency_keys_across_a_restart(tmp_path):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        first = await _send(client, provider.base_url, "+447700900123", key="k-restart")
    await asyncio.sleep(0)
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        again = await _send(client, provider.base_url, "+447700900123", key="k-restart")
        assert len(provider.messages()) == 1
    assert again.json()["sid"] == first.json()["sid"]


async def test_counting_repeats_the_smtp_sink_logs_every_receipt_and_still_keeps_one_file(tmp_path):
    from deploy.sinks.receipts import receipts_in, resent

    async with smtp_sink(tmp_path / "mail", count_repeats=True) as sink:
        for message_id in ("<a@orchard>", "<b@orchard>", "<a@orchard>", "<a@orchard>"):
            await aiosmtplib.send(_email("ann@example.com", message_id), hostname=sink.host, port=sink.port)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # refused: not a receipt
            await aiosmtplib.send(_email("bounce@example.com", "<c@o>"), hostname=sink.host, port=sink.port)
        saved = sink.messages()

    assert sorted(m["Message-ID"] for m in saved) == ["<a@orchard>", "<b@orchard>"]
    assert receipts_in(tmp_path / "mail") == {"<a@orchard>": 3, "<b@orchard>": 1}
    assert resent(tmp_path / "mail") == (4, 2)
    assert resent(tmp_path / "mail", {"<b@orchard>"}) == (1, 1)


async def test_counting_repeats_the_provider_counts_every_receipt_and_still_answers_the_original(tmp_path):
    from deploy.sinks.receipts import receipts_in

    async with (
        fake_provider(tmp_path / "messages", count_repeats=True) as provider,
        httpx.AsyncClient() as client,
    ):
        first = await _send(client, provider.base_url, "+447700900123", key="k1")
        again = await _send(client, provider.base_url, "+447700900123", key="k1")
        await _send(client, provider.base_url, "+447700900124", key="k2")
        await _send(client, provider.base_url, "+15005550001", key="k3")  # refused: not a receipt
        await _send(client, provider.base_url, "+15005550001", key="k3")
        counted = (await client.get(f"{provider.base_url}/_control/receipts")).json()
        saved = provider.messages()

    assert again.json()["sid"] == first.json()["sid"]
    assert len(saved) == 2
    assert counted == {"counting": True, "receipts": 3, "distinct": 2}
    assert receipts_in(tmp_path / "messages") == {"k1": 2, "k2": 1}


async def test_without_counting_no_receipts_are_logged(tmp_path):
    async with fake_provider(tmp_path / "messages") as provider, httpx.AsyncClient() as client:
        await _send(client, provider.base_url, "+447700900123", key="k1")
        await _send(client, provider.base_url, "+447700900123", key="k1")
        counted = (await client.get(f"{provider.base_url}/_control/receipts")).json()
    assert counted == {"counting": False, "receipts": 0, "distinct": 0}
    assert not (tmp_path / "messages" / "receipts.log").exists()

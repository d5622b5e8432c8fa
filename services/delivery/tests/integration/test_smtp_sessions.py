"""The SMTP adapter against the real SMTP sink: one kept session for many messages, a fresh one when
the server has closed it, and a refused recipient that leaves the session usable."""

import asyncio
import uuid

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP

from contracts.values import Channel
from deploy.sinks.smtp import MailboxHandler
from deploy.sinks.testing import smtp_sink
from services.delivery.channels import Outgoing
from services.delivery.channels.email import SmtpEmailSender
from services.delivery.domain import ReasonCode
from services.delivery.settings import DeliverySettings
from services.delivery.templates import Rendered


def _message(to: str = "ann@example.com") -> Outgoing:
    rendered = Rendered(text="Your code ORCH-1\n", subject="Your reward", html="<p>ORCH-1</p>\n")
    return Outgoing(Channel.EMAIL, to, "Ann", rendered, f"<{uuid.uuid4()}.1.email@orchard.test>")


@pytest.fixture
def connections(monkeypatch):
    """How many SMTP connections the adapter opened."""
    opened: list[int] = []
    connect = aiosmtplib.SMTP.connect

    async def counted(self, *args, **kwargs):
        opened.append(1)
        return await connect(self, *args, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "connect", counted)
    return opened


async def test_many_messages_share_one_session_and_a_refused_recipient_does_not_end_it(tmp_path, connections):
    async with smtp_sink(tmp_path / "mail") as sink:
        sender = SmtpEmailSender(DeliverySettings(ORCHARD_DELIVERY_SMTP_PORT=sink.port))
        try:
            results = [await sender.send(_message(), idempotency_key="k") for _ in range(3)]
            bounced = await sender.send(_message("bounce.ann@example.com"), idempotency_key="k")
            after = await sender.send(_message(), idempotency_key="k")
        finally:
            await sender.close()
        saved = sink.messages()

    assert all(r.ok for r in [*results, after])
    assert bounced.reason_code is ReasonCode.BOUNCED
    assert len(connections) == 1
    assert len(saved) == 4


async def test_a_session_the_server_dropped_is_replaced_and_the_message_goes_once(tmp_path, connections):
    loop = asyncio.get_running_loop()
    handler = MailboxHandler(tmp_path / "mail")
    sessions: list[SMTP] = []

    def session() -> SMTP:
        sessions.append(SMTP(handler, hostname="sink", loop=loop))
        return sessions[-1]

    server = await loop.create_server(session, host="127.0.0.1", port=0)
    sender = SmtpEmailSender(DeliverySettings(ORCHARD_DELIVERY_SMTP_PORT=server.sockets[0].getsockname()[1]))
    try:
        assert (await sender.send(_message(), idempotency_key="k")).ok
        sessions[0].transport.close()  # the server drops the kept, idle session
        await asyncio.sleep(0.1)
        assert (await sender.send(_message(), idempotency_key="k")).ok
        assert (await sender.send(_message(), idempotency_key="k")).ok
    finally:
        await sender.close()
        server.close()

    assert len(list((tmp_path / "mail").glob("*.eml"))) == 3
    assert len(connections) == 2

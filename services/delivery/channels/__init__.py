"""Channel adapters: email over SMTP, SMS and WhatsApp over Twilio-shaped HTTP APIs.

Each takes an `Outgoing` message and an idempotency key and returns a `SendResult`; it never raises
for a provider's answer, and never puts contact details or codes into the result's `response`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from contracts.values import Channel
from services.delivery.domain import SendResult
from services.delivery.templates import Rendered


@dataclass(frozen=True)
class Outgoing:
    channel: Channel
    to: str
    name: str | None
    content: Rendered
    message_id: str
    """Stable per delivery, send round and channel: the Message-ID of an email."""

    def __repr__(self) -> str:
        return f"Outgoing({self.channel}, message_id={self.message_id})"


class ChannelSender(Protocol):
    async def send(self, message: Outgoing, *, idempotency_key: str) -> SendResult: ...

    async def close(self) -> None: ...

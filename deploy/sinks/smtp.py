"""`python -m deploy.sinks.smtp`: an SMTP server on 127.0.0.1:1025 that saves each message under
`var/mail/` as `<sha256 of its Message-ID>.eml`.

A message sent again with the same Message-ID (a retry after an unknown outcome) replaces its file
rather than adding one, the way a mail client threads duplicates away. Magic recipients exercise the
failure paths: a local part starting with `bounce` is refused for good (550, a hard bounce), one
starting with `tempfail` is deferred (451).

With ORCHARD_SINK_COUNT_REPEATS=1 every message taken, repeats included, is also counted: one line
(its Message-ID) in `<mail dir>/receipts.log` (deploy/sinks/receipts.py).

Settings: ORCHARD_SMTP_SINK_HOST, ORCHARD_SMTP_SINK_PORT, ORCHARD_MAIL_DIR (default `<var>/mail`),
ORCHARD_SINK_COUNT_REPEATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import uuid
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from deploy.sinks.config import listening, sink_dir
from deploy.sinks.files import BatchWriter
from deploy.sinks.ports import SMTP_SINK_PORT
from deploy.sinks.receipts import ReceiptLog

log = logging.getLogger("orchard.smtp_sink")

DEFAULT_PORT = SMTP_SINK_PORT
_HEADERS = BytesHeaderParser(policy=compat32)


@dataclass(frozen=True)
class SmtpSinkConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    mail_dir: Path = Path("var/mail")
    count_repeats: bool = False

    @classmethod
    def from_env(cls) -> SmtpSinkConfig:
        return cls(
            **listening("ORCHARD_SMTP_SINK", DEFAULT_PORT), mail_dir=sink_dir("ORCHARD_MAIL_DIR", "mail")
        )


def eml_name(message_id: str | None) -> str:
    key = message_id.strip() if message_id else f"<no-id-{uuid.uuid4().hex}>"
    return hashlib.sha256(key.encode()).hexdigest()[:40] + ".eml"


class MailboxHandler:
    """aiosmtpd handler: refuses magic recipients, saves everything else."""

    def __init__(self, mail_dir: Path, receipts: ReceiptLog | None = None) -> None:
        self.mail_dir = mail_dir
        self._writer = BatchWriter(mail_dir)
        self._receipts = receipts

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 Recipient address rejected: mailbox unavailable"
        if local.startswith("tempfail"):
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(content, str):
            content = content.encode()
        message_id = _HEADERS.parsebytes(content.split(b"\r\n\r\n", 1)[0]).get("Message-ID")
        name = eml_name(message_id)
        await self._writer.write(name, content)
        if self._receipts is not None:
            self._receipts.add(message_id.strip() if message_id else name)
        return f"250 2.0.0 Ok: queued as {name[:12]}"


async def start_smtp_sink(config: SmtpSinkConfig) -> asyncio.Server:
    """Listen and serve in the running loop; close the returned server to stop."""
    handler = MailboxHandler(config.mail_dir, ReceiptLog(config.mail_dir) if config.count_repeats else None)
    loop = asyncio.get_running_loop()

    def protocol() -> Any:
        return SMTP(handler, hostname="orchard-smtp-sink", ident="Orchard SMTP sink", loop=loop)

    config.mail_dir.mkdir(parents=True, exist_ok=True)
    # aiosmtpd logs every connection and command at INFO: a line per step of every message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return await loop.create_server(protocol, host=config.host, port=config.port, reuse_address=True)


async def _serve(config: SmtpSinkConfig) -> None:
    server = await start_smtp_sink(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("smtp sink listening on %s:%s, saving to %s", config.host, config.port, config.mail_dir)
    await stop.wait()
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), timeout=5)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(SmtpSinkConfig.from_env()))


if __name__ == "__main__":
    main()

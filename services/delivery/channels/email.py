"""Email over real SMTP with aiosmtplib; STARTTLS, implicit TLS and AUTH come from settings.

Sessions are kept and reused: a worker sends many messages over one SMTP session (MAIL, RCPT, DATA
each time; RSET after a refusal) instead of connecting, greeting and quitting per message. A session
is dropped after an error, after `ORCHARD_DELIVERY_SMTP_SESSION_MESSAGES` messages, or when it has been idle
for `ORCHARD_DELIVERY_SMTP_SESSION_IDLE` seconds; a kept session the server has meanwhile closed is found out
at MAIL FROM, before anything of the message left, and the message goes over a fresh one.

Messages are composed here as bytes (multipart/alternative, quoted-printable UTF-8 parts, RFC 2047
headers): the standard library's `EmailMessage` costs milliseconds of CPU per message, this a few
tens of microseconds, for the same standard MIME.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import time
import uuid
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

import aiosmtplib

from chassis.logging import redact_text
from services.delivery.channels import Outgoing
from services.delivery.domain import ReasonCode, SendResult
from services.delivery.settings import DeliverySettings

CRLF = "\r\n"


def _one_line(value: str) -> str:
    """Header values never carry line breaks of their own (no header injection from a name)."""
    return " ".join(value.splitlines()).strip()


def _header(value: str) -> str:
    """RFC 2047 encoded (if not ASCII) and folded at 78 characters; a short ASCII value as it is."""
    value = _one_line(value)
    if value.isascii() and len(value) <= 66 and "=?" not in value:
        return value
    return Header(value, "us-ascii" if value.isascii() else "utf-8").encode(linesep=CRLF)


def _address(name: str | None, addr: str) -> str:
    return formataddr((_one_line(name or ""), addr), charset="utf-8")


@functools.lru_cache(maxsize=8)
def _sender_header(sender: str) -> str:
    name, addr = parseaddr(sender)
    return _address(name, addr) if addr else _one_line(sender)


def _part(content_type: str, text: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    body = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
    return (
        f'Content-Type: {content_type}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}" + CRLF.join(body.splitlines()) + CRLF
    )


def build_email(message: Outgoing, sender: str) -> bytes:
    """The whole message as sent: headers, then a text part or text and HTML alternatives."""
    headers = [
        f"From: {_sender_header(sender)}",
        f"To: {_address(message.name, message.to)}",
        f"Subject: {_header(message.content.subject or '')}",
        f"Message-ID: {_one_line(message.message_id)}",
        f"Date: {formatdate(usegmt=True)}",
        "MIME-Version: 1.0",
    ]
    if not message.content.html:
        return (CRLF.join(headers) + CRLF + _part("text/plain", message.content.text)).encode("utf-8")
    boundary = f"=_orchard_{uuid.uuid4().hex}"  # '=_' never occurs in quoted-printable text
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    parts = (  # the line break before each boundary belongs to the boundary (RFC 2046)
        f"--{boundary}{CRLF}"
        + _part("text/plain", message.content.text)
        + f"{CRLF}--{boundary}{CRLF}"
        + _part("text/html", message.content.html)
        + f"{CRLF}--{boundary}--{CRLF}"
    )
    return (CRLF.join(headers) + CRLF + CRLF + parts).encode("utf-8")


def _smtp_failure(code: int, text: str, permanent_reason: ReasonCode) -> SendResult:
    response = redact_text(f"SMTP {code} {text}")[:500]
    if 400 <= code < 500:
        return SendResult.failure(ReasonCode.SMTP_DEFERRED, response)
    return SendResult.failure(permanent_reason, response)


@dataclass
class _Session:
    client: aiosmtplib.SMTP
    sent: int = 0
    last_used: float = 0.0


class _StaleSession(Exception):
    """A kept session turned out closed before the message started: nothing of it left."""


class SmtpEmailSender:
    def __init__(self, settings: DeliverySettings) -> None:
        self._settings = settings
        self._idle: list[_Session] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._sender = _sender_header(settings.email_from)
        self._envelope_from = parseaddr(settings.email_from)[1] or settings.email_from

    async def _connect(self) -> _Session:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_implicit_tls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.provider_timeout_s,
        )
        await client.connect()
        return _Session(client)

    def _take_idle(self) -> _Session | None:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if session.client.is_connected and now - session.last_used < self._settings.smtp_session_idle_s:
                return session
            self._discard(session)
        return None

    def _discard(self, session: _Session) -> None:
        with contextlib.suppress(Exception):
            session.client.close()

    def _keep(self, session: _Session) -> None:
        session.sent += 1
        session.last_used = time.monotonic()
        if session.sent >= self._settings.smtp_session_messages or not session.client.is_connected:
            closing = asyncio.get_running_loop().create_task(self._quit(session))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        else:
            self._idle.append(session)

    async def _quit(self, session: _Session) -> None:
        with contextlib.suppress(Exception):
            await session.client.quit()
        self._discard(session)

    async def _transfer(self, session: _Session, recipient: str, content: bytes, reused: bool) -> str:
        client = session.client
        encoding = "ascii" if recipient.isascii() else "utf-8"
        options = [] if encoding == "ascii" else ["SMTPUTF8"]
        try:
            await client.mail(self._envelope_from, options=options, encoding=encoding)
        except aiosmtplib.SMTPTimeoutError:
            raise
        except (aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            if reused:  # closed while kept: nothing of this message has left yet
                raise _StaleSession from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if reused and exc.code == 421:
                raise _StaleSession from exc
            await self._reset(client)
            raise
        try:
            await client.rcpt(recipient, encoding=encoding)
            response = await client.data(content)
        except aiosmtplib.SMTPResponseException:
            await self._reset(client)
            raise
        return response.message

    @staticmethod
    async def _reset(client: aiosmtplib.SMTP) -> None:
        """A refused envelope is reset (RSET) so the session can carry the next message."""
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPException):
            await client.rset()

    async def send(self, message: Outgoing, *, idempotency_key: str) -> SendResult:
        content = build_email(message, self._settings.email_from)
        session: _Session | None = None
        try:
            session = self._take_idle()
            try:
                if session is None:
                    session = await self._connect()
                    response = await self._transfer(session, message.to, content, reused=False)
                else:
                    response = await self._transfer(session, message.to, content, reused=True)
            except _StaleSession:
                self._drop(session)
                session = None
                session = await self._connect()
                response = await self._transfer(session, message.to, content, reused=False)
        except aiosmtplib.SMTPRecipientRefused as exc:
            self._release(session)
            return _smtp_failure(exc.code, exc.message, ReasonCode.BOUNCED)
        except aiosmtplib.SMTPAuthenticationError as exc:
            self._drop(session)
            return SendResult.failure(
                ReasonCode.PROVIDER_AUTH_FAILED, f"SMTP {exc.code} authentication failed"
            )
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            self._drop(session)
            return SendResult.failure(ReasonCode.PROVIDER_TIMEOUT, "SMTP timed out")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop(session)
            return SendResult.failure(
                ReasonCode.PROVIDER_UNREACHABLE, f"SMTP unreachable: {type(exc).__name__}"
            )
        except aiosmtplib.SMTPResponseException as exc:
            self._release(session)
            return _smtp_failure(exc.code, exc.message, ReasonCode.PROVIDER_REJECTED)
        except BaseException:
            self._drop(session)
            raise
        self._keep(session)
        return SendResult.success(redact_text(response)[:500], message.message_id)

    def _release(self, session: _Session | None) -> None:
        """After a refusal the client has reset the envelope (RSET): the session is still good."""
        if session is not None:
            self._keep(session)

    def _drop(self, session: _Session | None) -> None:
        if session is not None:
            self._discard(session)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(s) for s in idle), return_exceptions=True)

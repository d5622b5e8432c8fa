"""Email over real SMTP with aiosmtplib; STARTTLS, implicit TLS and AUTH come from settings."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from chassis.logging import redact_text
from services.delivery.channels import Outgoing
from services.delivery.domain import ReasonCode, SendResult
from services.delivery.settings import DeliverySettings


def build_email(message: Outgoing, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = Address(display_name=message.name or "", addr_spec=message.to)
    email["Subject"] = message.content.subject or ""
    email["Message-ID"] = message.message_id
    email["Date"] = formatdate(usegmt=True)
    email.set_content(message.content.text)
    if message.content.html:
        email.add_alternative(message.content.html, subtype="html")
    return email


def _smtp_failure(code: int, text: str, permanent_reason: ReasonCode) -> SendResult:
    response = redact_text(f"SMTP {code} {text}")[:500]
    if 400 <= code < 500:
        return SendResult.failure(ReasonCode.SMTP_DEFERRED, response)
    return SendResult.failure(permanent_reason, response)


class SmtpEmailSender:
    def __init__(self, settings: DeliverySettings) -> None:
        self._settings = settings

    async def send(self, message: Outgoing, *, idempotency_key: str) -> SendResult:
        s = self._settings
        email = build_email(message, s.email_from)
        try:
            _, response = await aiosmtplib.send(
                email,
                hostname=s.smtp_host,
                port=s.smtp_port,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_implicit_tls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.provider_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return _smtp_failure(refused.code, refused.message, ReasonCode.BOUNCED)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return SendResult.failure(
                ReasonCode.PROVIDER_AUTH_FAILED, f"SMTP {exc.code} authentication failed"
            )
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return SendResult.failure(ReasonCode.PROVIDER_TIMEOUT, "SMTP timed out")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return SendResult.failure(
                ReasonCode.PROVIDER_UNREACHABLE, f"SMTP unreachable: {type(exc).__name__}"
            )
        except aiosmtplib.SMTPResponseException as exc:
            return _smtp_failure(exc.code, exc.message, ReasonCode.PROVIDER_REJECTED)
        return SendResult.success(redact_text(response)[:500], message.message_id)

    async def close(self) -> None:
        return None

"""SMS and WhatsApp through an HTTP API shaped like Twilio's Messages API (httpx).

`POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with `To`, `From`, `Body`, basic auth, and the
`I-Twilio-Idempotency-Token` header so a repeated attempt after an unknown outcome is not sent twice.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from chassis.logging import redact_text
from contracts.values import Channel
from services.delivery.channels import Outgoing
from services.delivery.domain import ReasonCode, SendResult

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
INVALID_NUMBER_CODES = frozenset({21211, 21214, 21217, 21401, 21407, 21408, 21612, 21614})
UNREACHABLE_ACCOUNT_CODES = frozenset({63003, 63016, 63024, 63032})


def _reason_for(status: int, code: int | None) -> ReasonCode:
    if status == 429:
        return ReasonCode.RATE_LIMITED
    if status >= 500:
        return ReasonCode.PROVIDER_ERROR
    if status in (401, 403):
        return ReasonCode.PROVIDER_AUTH_FAILED
    if code in INVALID_NUMBER_CODES:
        return ReasonCode.INVALID_NUMBER
    if code in UNREACHABLE_ACCOUNT_CODES:
        return ReasonCode.WHATSAPP_UNREACHABLE
    return ReasonCode.PROVIDER_REJECTED


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


class TwilioSender:
    def __init__(
        self,
        *,
        channel: Channel,
        base_url: str,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str,
        timeout_s: float,
        max_connections: int = 20,
    ) -> None:
        self._channel = channel
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token.get_secret_value()}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._from = from_number
        # Kept-alive connections, as many as the channel's workers send at once.
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30,
            ),
        )

    def _address(self, number: str) -> str:
        return f"whatsapp:{number}" if self._channel is Channel.WHATSAPP else number

    async def send(self, message: Outgoing, *, idempotency_key: str) -> SendResult:
        try:
            answer = await self._client.post(
                self._url,
                content=urlencode(
                    {
                        "To": self._address(message.to),
                        "From": self._address(self._from),
                        "Body": message.content.text,
                    }
                ),
                headers={**self._headers, IDEMPOTENCY_HEADER: idempotency_key},
            )
        except httpx.TimeoutException:
            return SendResult.failure(ReasonCode.PROVIDER_TIMEOUT, "provider timed out")
        except httpx.TransportError as exc:
            return SendResult.failure(
                ReasonCode.PROVIDER_UNREACHABLE, f"provider unreachable: {type(exc).__name__}"
            )
        try:
            body = answer.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if answer.status_code in (200, 201):
            sid = str(body.get("sid") or "") or None
            return SendResult.success(
                f"HTTP {answer.status_code} {body.get('status', '')} {sid or ''}".strip(), sid
            )
        code = body.get("code") if isinstance(body.get("code"), int) else None
        text = redact_text(str(body.get("message", "")))[:300]
        response = f"HTTP {answer.status_code} code {code}: {text}" if code else f"HTTP {answer.status_code}"
        return SendResult.failure(
            _reason_for(answer.status_code, code), response, _retry_after(answer.headers.get("Retry-After"))
        )

    async def close(self) -> None:
        await self._client.aclose()

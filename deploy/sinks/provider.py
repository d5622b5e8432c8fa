"""`python -m deploy.sinks.provider`: a fake SMS/WhatsApp provider shaped like Twilio's Messages API,
on 127.0.0.1:8190, saving each accepted message as `<sid>.json` under `var/messages/`.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form fields `To`, `From`, `Body`; HTTP basic
auth with the account SID as user; `whatsapp:` prefixes select WhatsApp) answers 201 with a Twilio-like
message resource. The `I-Twilio-Idempotency-Token` header makes a repeat safe: the same token gets the
first answer again and no second message is saved.

Failures, so every path of a client can be exercised:
- magic numbers: +15005550001 invalid number (400, Twilio code 21211), +15005550002 unreachable
  WhatsApp account (400, 63003; on SMS it is an ordinary number), +15005550429 rate limited (429),
  +15005550500 server error (500), +15005550408 timeout (answers 504 only after the timeout delay);
- mode `slow` (control endpoint only) saves the message at once but answers only after the timeout
  delay: a sender that dies meanwhile never learns that its message left;
- `POST /_control/failures` `{"to": "+4470...", "mode": "<one of the above>", "times": N}` makes the
  next N messages to that number fail that way (`times` 0: until `DELETE /_control/failures`).

With ORCHARD_SINK_COUNT_REPEATS=1 every message taken (answered 201), repeats included, is also
counted: one line (its idempotency token, else its sid) in `<messages dir>/receipts.log`, and
`GET /_control/receipts` answers `{"receipts": N, "distinct": M}` for this process's lifetime. The
answers toward the client stay as they are (a repeated token still gets the original message).

Settings: ORCHARD_PROVIDER_HOST, ORCHARD_PROVIDER_PORT, ORCHARD_MESSAGES_DIR (default
`<var>/messages`), ORCHARD_PROVIDER_TIMEOUT_DELAY (seconds, default 30), ORCHARD_SINK_COUNT_REPEATS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from deploy.sinks.config import listening, sink_dir
from deploy.sinks.files import BatchWriter
from deploy.sinks.ports import FAKE_PROVIDER_PORT
from deploy.sinks.receipts import ReceiptLog

DEFAULT_PORT = FAKE_PROVIDER_PORT
API_PREFIX = "/2010-04-01/Accounts"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
WHATSAPP_PREFIX = "whatsapp:"
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


class FailureMode(StrEnum):
    INVALID_NUMBER = "invalid_number"
    WHATSAPP_UNREACHABLE = "whatsapp_unreachable"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    SLOW = "slow"
    """Not a failure: the message is saved at once, the answer comes after the timeout delay."""


MAGIC_NUMBERS: dict[str, FailureMode] = {
    "+15005550001": FailureMode.INVALID_NUMBER,
    "+15005550002": FailureMode.WHATSAPP_UNREACHABLE,
    "+15005550429": FailureMode.RATE_LIMITED,
    "+15005550500": FailureMode.SERVER_ERROR,
    "+15005550408": FailureMode.TIMEOUT,
}


@dataclass(frozen=True)
class ProviderConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    messages_dir: Path = Path("var/messages")
    timeout_delay_s: float = 30.0
    count_repeats: bool = False
    """Count every message taken, repeats included (receipts.log, GET /_control/receipts)."""

    @classmethod
    def from_env(cls) -> ProviderConfig:
        return cls(
            **listening("ORCHARD_PROVIDER", DEFAULT_PORT),
            messages_dir=sink_dir("ORCHARD_MESSAGES_DIR", "messages"),
            timeout_delay_s=float(os.environ.get("ORCHARD_PROVIDER_TIMEOUT_DELAY", "30")),
        )


class FailureRule(BaseModel):
    to: str = Field(pattern=_E164.pattern, description="the number, without any whatsapp: prefix")
    mode: FailureMode
    times: int = Field(default=1, ge=0, description="how many messages fail; 0 means until cleared")


@dataclass
class _State:
    rules: dict[str, FailureRule] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    in_flight: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    receipts: Counter[str] = field(default_factory=Counter)
    receipt_log: ReceiptLog | None = None

    def received(self, key: str) -> None:
        """One message taken (first or repeat), when counting repeats."""
        if self.receipt_log is not None:
            self.receipts[key] += 1
            self.receipt_log.add(key)

    def failure_for(self, number: str, channel: str) -> FailureMode | None:
        rule = self.rules.get(number)
        if rule is not None:
            if rule.times:
                self.remaining[number] -= 1
                if self.remaining[number] <= 0:
                    del self.rules[number], self.remaining[number]
            return rule.mode
        magic = MAGIC_NUMBERS.get(number)
        if magic is FailureMode.WHATSAPP_UNREACHABLE and channel != "whatsapp":
            return None
        return magic


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


_FAILURES: dict[FailureMode, tuple[int, int, str]] = {
    FailureMode.INVALID_NUMBER: (400, 21211, "Invalid 'To' Phone Number"),
    FailureMode.WHATSAPP_UNREACHABLE: (400, 63003, "Channel could not find To address"),
    FailureMode.RATE_LIMITED: (429, 20429, "Too Many Requests"),
    FailureMode.SERVER_ERROR: (500, 20500, "Internal Server Error"),
    FailureMode.TIMEOUT: (504, 20504, "Gateway Timeout"),
}


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _repeat(state: _State, token: str, answer: tuple[int, dict[str, Any]]) -> Response:
    """A repeated token: the first answer again; a message taken again is a receipt (counted)."""
    if answer[0] == 201:
        state.received(token)
    return _answer(*answer)


def _basic_user(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        user, _, token = base64.b64decode(authorization[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user if user and token else None


def _remembered_answers(directory: Path) -> dict[str, tuple[int, dict[str, Any]]]:
    """Idempotency tokens survive a restart: they are read back from the saved messages."""
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        token = saved.pop("idempotency_key", None)
        if token:
            saved.pop("channel", None)
            saved.pop("saved_at", None)
            answers[token] = (201, saved)
    return answers


_MESSAGES_PATH = re.compile("^" + re.escape(API_PREFIX) + r"/([^/]+)/Messages\.json$")


class _MessagesFastPath:
    """Sends `POST …/Messages.json` straight to its handler, past FastAPI's routing, dependency and
    middleware layers (they cost more than the handler); every other request goes to the app."""

    def __init__(self, app: FastAPI, handler: Callable[[Request, str], Awaitable[Response]]) -> None:
        self.app = app
        self.state = app.state
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = _MESSAGES_PATH.match(scope["path"])
            if found:
                response = await self._handler(Request(scope, receive), found.group(1))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ProviderConfig) -> ASGIApp:
    app = FastAPI(title="Orchard fake SMS/WhatsApp provider (Twilio-compatible)")
    state = _State(answers=_remembered_answers(config.messages_dir))
    if config.count_repeats:
        state.receipt_log = ReceiptLog(config.messages_dir)
    app.state.provider = state
    writer = BatchWriter(config.messages_dir)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_control/failures", status_code=201)
    async def add_failure(rule: FailureRule) -> dict[str, Any]:
        async with state.lock:
            state.rules[rule.to] = rule
            state.remaining[rule.to] = rule.times
        return rule.model_dump()

    @app.get("/_control/receipts")
    async def receipts() -> dict[str, Any]:
        return {
            "counting": state.receipt_log is not None,
            "receipts": sum(state.receipts.values()),
            "distinct": len(state.receipts),
        }

    @app.delete("/_control/failures", status_code=204)
    async def clear_failures() -> None:
        async with state.lock:
            state.rules.clear()
            state.remaining.clear()

    @app.post(API_PREFIX + "/{account_sid}/Messages.json")
    async def create_message(request: Request, account_sid: str) -> Response:
        # The form is read by hand: FastAPI's Form() parsing costs more than the rest of the request.
        if _basic_user(request.headers.get("authorization")) != account_sid:
            return _error(401, 20003, "Authenticate")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        to, from_, body = (form.get(f, [""])[0] for f in ("To", "From", "Body"))
        idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
        if not to or not from_ or not body:
            return _error(400, 21604, "A 'To', 'From' and 'Body' parameter are required")
        channel = "whatsapp" if to.startswith(WHATSAPP_PREFIX) else "sms"
        number = to.removeprefix(WHATSAPP_PREFIX)
        if idempotency_key:
            if idempotency_key in state.answers:
                return _repeat(state, idempotency_key, state.answers[idempotency_key])
            if idempotency_key in state.in_flight:  # the same message right now: its answer, once
                return _repeat(state, idempotency_key, await asyncio.shield(state.in_flight[idempotency_key]))
        failure = FailureMode.INVALID_NUMBER if not _E164.fullmatch(number) else None
        failure = failure or state.failure_for(number, channel)
        slow = failure is FailureMode.SLOW
        if slow:
            failure = None
        if failure is FailureMode.TIMEOUT:
            await asyncio.sleep(config.timeout_delay_s)
        if failure is not None:
            status, code, message = _FAILURES[failure]
            headers = {"Retry-After": "1"} if failure is FailureMode.RATE_LIMITED else None
            response = _error(status, code, message, headers)
            if status < 500 and status != 429 and idempotency_key:
                state.answers[idempotency_key] = (status, json.loads(bytes(response.body)))
            return response
        now = datetime.now(UTC)
        sid = "SM" + uuid.uuid4().hex
        answer = {
            "sid": sid,
            "account_sid": account_sid,
            "to": to,
            "from": from_,
            "body": body,
            "status": "queued",
            "num_segments": str(max(1, -(-len(body) // 153))),
            "date_created": now.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "uri": f"{API_PREFIX}/{account_sid}/Messages/{sid}.json",
            "error_code": None,
            "error_message": None,
        }
        saved = {
            **answer,
            "channel": channel,
            "idempotency_key": idempotency_key,
            "saved_at": now.isoformat(),
        }
        claim: asyncio.Future[tuple[int, dict[str, Any]]] | None = None
        if idempotency_key:
            claim = state.in_flight[idempotency_key] = asyncio.get_running_loop().create_future()
        try:
            await writer.write(f"{sid}.json", json.dumps(saved, indent=2).encode())
        except BaseException as exc:
            if claim is not None:
                claim.set_exception(exc)
                claim.exception()  # retrieved: a waiter, if any, gets it; nobody else
            raise
        finally:
            if idempotency_key:
                state.in_flight.pop(idempotency_key, None)
        if idempotency_key:
            state.answers[idempotency_key] = (201, answer)
        state.received(idempotency_key or sid)
        if claim is not None and not claim.done():
            claim.set_result((201, answer))
        if slow:
            await asyncio.sleep(config.timeout_delay_s)
        return _answer(201, answer)

    return _MessagesFastPath(app, create_message)


def main() -> None:
    config = ProviderConfig.from_env()
    config.messages_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()

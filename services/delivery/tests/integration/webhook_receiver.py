"""A real HTTP endpoint for webhook tests: a small asyncio HTTP/1.1 server on a free port that checks
each POST's `Orchard-Signature` with the secrets it is told, the way the README tells receivers to."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from deploy.infra.net import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_id(self) -> str:
        return self.headers["orchard-event-id"]


def verify(header: str, body: bytes, secret: str, tolerance_s: int = 300) -> bool:
    """The README's receiver check."""
    items = [part.split("=", 1) for part in header.split(",")]
    timestamp = next(value for key, value in items if key == "t")
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in items if key == "v1")


Behaviour = Callable[[Received], tuple[int, float]]
"""(status to answer, seconds to wait before answering) for a request."""


@dataclass
class Receiver:
    port: int
    secrets: list[str] = field(default_factory=list)
    behaviour: Behaviour = lambda _: (200, 0.0)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            signature = headers.get("orchard-signature", "")
            verified = bool(signature) and any(verify(signature, body, s) for s in self.secrets)
            request = Received(path, headers, body, verified)
            self.received.append(request)
            status, delay = self.behaviour(request)
            if delay:
                await asyncio.sleep(delay)
            extra = f"Location: {self.url('/elsewhere')}\r\n" if 300 <= status < 400 else ""
            answer = b'{"ok": true}'
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n"
                f"{extra}Connection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
            request.answered = status
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@contextlib.asynccontextmanager
async def webhook_receiver(behaviour: Behaviour | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port())
    if behaviour is not None:
        receiver.behaviour = behaviour
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", receiver.port)
    try:
        yield receiver
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

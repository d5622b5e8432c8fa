"""The HTTP client webhooks are POSTed with. Outside development its connections go only to public
addresses: the host is resolved when the connection is opened, every address it resolves to is
checked, and the connection is made to the checked address (a name that resolves elsewhere a moment
later, DNS rebinding, reaches nothing). No redirect is followed, no proxy from the environment is
used, and at most `max_body` bytes of an answer are read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore
import httpx

from .domain import AddressRefused, check_url, refused_address


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves, refuses any loopback, private, link-local… address, connects to the checked one."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        for address in addresses:
            why = refused_address(address)
            if why:
                raise AddressRefused(f"{host} resolves to {why}")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal: itself)."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"{host} does not resolve: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_destination(url: str, *, dev: bool) -> None:
    """At registration: the URL's shape (`domain.check_url`) and, outside development, every address
    its host resolves to now. A name that does not resolve yet is let through: each connection checks
    where it leads at that moment."""
    host, port = check_url(url, dev=dev)
    if dev:
        return
    try:
        addresses = await resolve(host, port)
    except httpx.ConnectError:
        return
    for address in addresses:
        why = refused_address(address)
        if why:
            raise AddressRefused(f"{host} resolves to {why}")


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, *, public_only: bool, max_connections: int) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        super().__init__(trust_env=False, limits=limits)
        if public_only:
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=_PublicOnlyBackend(),
            )


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str | None
    body: bytes = b""
    duration_ms: int = 0


class WebhookClient:
    def __init__(self, *, public_only: bool, timeout_s: float, max_body: int, max_connections: int) -> None:
        self._timeout_s = timeout_s
        self._max_body = max_body
        self._client = httpx.AsyncClient(
            transport=_Transport(public_only=public_only, max_connections=max_connections),
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST and read at most `max_body` bytes of the answer, all within one timeout; never raises
        for what the endpoint (or the way to it) does: the failure is the answer's `error`."""
        began = time.monotonic()
        try:
            with anyio.fail_after(self._timeout_s):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    read = b""
                    async for chunk in response.aiter_raw():
                        read += chunk
                        if len(read) >= self._max_body:
                            read = read[: self._max_body]
                            break
                    status = response.status_code
        except AddressRefused as exc:
            return Answer(None, f"refused: {exc}", duration_ms=_ms(began))
        except TimeoutError:
            return Answer(None, f"timed out after {self._timeout_s:g} s", duration_ms=_ms(began))
        except httpx.HTTPError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:500], duration_ms=_ms(began))
        error = None if 200 <= status < 300 else f"HTTP {status}"
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        return Answer(status, error, read, _ms(began))

    async def close(self) -> None:
        await self._client.aclose()


def _ms(began: float) -> int:
    return int((time.monotonic() - began) * 1000)

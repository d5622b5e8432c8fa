"""Webhook rules with no I/O: which topics may be subscribed to, the signature, the retry schedule,
when a failing webhook is disabled, and which addresses a webhook may never reach."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from contracts.registry import STATUS_TOPICS

SIGNATURE_HEADER = "Orchard-Signature"
EVENT_ID_HEADER = "Orchard-Event-Id"
SECRET_PREFIX = "whsec_"
PING_EVENT = "webhook.ping"


class WebhookError(Exception):
    """Base of the webhook refusals below."""


class WebhookNotFound(WebhookError):
    pass


class UnknownEvents(WebhookError):
    def __init__(self, unknown: Sequence[str]) -> None:
        super().__init__(
            f"not a status topic: {', '.join(unknown)} (choose from {', '.join(sorted(STATUS_TOPICS))})"
        )
        self.unknown = tuple(unknown)


class AddressRefused(WebhookError):
    """The URL is not one a webhook may call: bad scheme, or a loopback, private or link-local address."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_events(events: Iterable[str]) -> list[str]:
    """The topics, each once and in the order given; refused unless all are status topics."""
    chosen = list(dict.fromkeys(events))
    unknown = [e for e in chosen if e not in STATUS_TOPICS]
    if unknown:
        raise UnknownEvents(unknown)
    return chosen


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<raw body>` keyed by the secret."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets_in_use: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<sig>[,v1=<sig by the previous secret during a rotation>]`."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets_in_use)])


def verify(header: str, body: bytes, secret: str, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (the README shows the same in a few lines)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    t = int(timestamps[0])
    if abs(now - t) > tolerance_s:
        return False
    expected = signature(secret, t, body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


@dataclass(frozen=True)
class RetrySchedule:
    base_s: float
    max_s: float

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with jitter: uniformly between half and all of
        min(max, base * 2^(attempts - 1))."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempts - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)


def should_disable(failing_since: datetime | None, now: datetime, disable_after: timedelta) -> bool:
    """A webhook that has answered nothing but failures for `disable_after` is switched off."""
    return failing_since is not None and now - failing_since >= disable_after


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def refused_address(address: str) -> str | None:
    """Why a webhook may not connect to this IP address, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for why, refused in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("shared (carrier-grade NAT)", ip in ipaddress.ip_network("100.64.0.0/10")),
    ):
        if refused:
            return f"{address} is a {why} address"
    return None


def check_url(url: str, *, dev: bool) -> tuple[str, int]:
    """(host, port) of a webhook URL; refused unless http(s) with a host (https outside dev mode), with
    no credentials in it, and, when the host is an IP address, one a webhook may reach."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("the URL must be http(s)://host/…")
    if not dev and parts.scheme != "https":
        raise AddressRefused("outside development a webhook URL must use https")
    if parts.username or parts.password:
        raise AddressRefused("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AddressRefused("the URL's port is not a port") from exc
    host = parts.hostname.rstrip(".")
    if not dev:
        if host == "localhost" or host.endswith(".localhost"):
            raise AddressRefused(f"{host} is a loopback name")
        try:
            why = refused_address(host)
        except ValueError:
            why = None  # a name: checked once resolved, at registration and before every connection
        if why:
            raise AddressRefused(why)
    return host, port

"""Server-side sessions: the browser holds only a random id in an httpOnly, SameSite=Lax cookie
(Secure, and `__Host-` prefixed, outside development); tokens never reach the browser.

Sessions live in this process's memory: a restart signs everyone out, which the provider's own session
turns into a quick redirect rather than a new password prompt.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.asgi import HttpMiddleware

ROTATE_KEY = "orchard.session.rotate"
"""Set in a request's scope to give its session a new id (after sign-in, against session fixation)."""


class SessionStore:
    """Sessions by id, forgotten after `idle_s` without use."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._sessions: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            found = self._sessions.get(sid)
            if found is None:
                return None
            if now - found[0] > self._idle_s:
                del self._sessions[sid]
                return None
            self._sessions[sid] = (now, found[1])
            return dict(found[1])

    def put(self, sid: str | None, data: dict[str, Any]) -> str:
        sid = sid or secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._sessions[sid] = (now, dict(data))
            if len(self._sessions) % 256 == 0:
                self._purge(now)
        return sid

    def delete(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def _purge(self, now: float) -> None:
        for sid in [sid for sid, (used, _) in self._sessions.items() if now - used > self._idle_s]:
            del self._sessions[sid]


class ServerSessionMiddleware(HttpMiddleware):
    """Gives every request `request.session` (a dict) kept in a `SessionStore`."""

    def __init__(self, app: ASGIApp, *, store: SessionStore, secure: bool) -> None:
        super().__init__(app)
        self.store = store
        self.secure = secure
        self.cookie = "__Host-orchard-console" if secure else "orchard-console"

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        sid = HTTPConnection(scope).cookies.get(self.cookie)
        loaded = self.store.get(sid) if sid else None
        scope["session"] = dict(loaded) if loaded is not None else {}

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._save(scope, message, sid if loaded is not None else None, loaded)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _save(self, scope: Scope, message: Message, sid: str | None, loaded: dict[str, Any] | None) -> None:
        session: dict[str, Any] = scope["session"]
        headers = MutableHeaders(scope=message)
        if not session:
            if sid is not None:
                self.store.delete(sid)
                headers.append("Set-Cookie", self._cookie("", max_age=0))
            return
        if sid is not None and scope.get(ROTATE_KEY):
            self.store.delete(sid)
            sid = None
        if sid is not None and session == loaded:
            return
        new_sid = self.store.put(sid, session)
        if new_sid != sid:
            headers.append("Set-Cookie", self._cookie(new_sid))

    def _cookie(self, value: str, *, max_age: int | None = None) -> str:
        parts = [f"{self.cookie}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

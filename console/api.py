"""The services' public HTTP APIs, called with the signed-in person's own token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from console.settings import ConsoleSettings


@dataclass
class ApiError(Exception):
    """A service refused or failed: its status and the problem it answered."""

    status: int
    code: str
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"


class Api:
    """One person's view of the services: every call carries their bearer token."""

    def __init__(self, settings: ConsoleSettings, client: httpx.AsyncClient, token: str) -> None:
        self._settings = settings
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        clean = {key: value for key, value in (params or {}).items() if value not in (None, "")}
        return await self._call("GET", service, path, params=clean)

    async def post(
        self, service: str, path: str, body: dict[str, Any] | None = None, files: Any = None
    ) -> Any:
        if files is not None:
            return await self._call("POST", service, path, files=files, data=body)
        return await self._call("POST", service, path, json=body or {})

    async def patch(self, service: str, path: str, body: dict[str, Any]) -> Any:
        return await self._call("PATCH", service, path, json=body)

    async def _call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        url = self._settings.service_url(service) + path
        try:
            response = await self._client.request(method, url, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(503, "service_unavailable", f"The {service} service did not answer.") from exc
        if response.status_code >= 400:
            raise problem_of(response)
        return response.json() if response.content else None


def problem_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        status=response.status_code,
        code=str(body.get("code") or body.get("title") or "error"),
        detail=str(body.get("detail") or body.get("title") or response.reason_phrase),
        errors=[e for e in body.get("errors") or [] if isinstance(e, dict)],
    )

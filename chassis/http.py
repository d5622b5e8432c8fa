"""The HTTP app every service serves: OpenAPI docs, request ids, access log, metrics, health, problems.

`create_http_app` returns a FastAPI app with:
- `GET /health/live`, `GET /health/ready`, `GET /metrics` (no auth), `GET /docs` (OpenAPI);
- `X-Request-ID` / `X-Correlation-ID` accepted (or made) per request, echoed in the response and
  bound to every log line written while the request is handled;
- one access log line and Prometheus metrics per request, labelled by route template;
- RFC 9457 problem bodies for every error (see `chassis.problems`);
- anonymous requests to token routes refused 401, and bodies over the route's limit 413, before the
  body is read (`BodyGuardMiddleware`; limits from settings, `body_limit` and `upload_body`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.asgi import HttpMiddleware
from chassis.auth import authenticate, requires_token
from chassis.logging import bind_correlation, redact_text
from chassis.metrics import EXPOSITION_CONTENT_TYPE, HTTP_LATENCY, HTTP_REQUESTS, render_metrics
from chassis.problems import Problem, ProblemDetails, describe_problem_responses, install_problem_handlers
from chassis.settings import Settings
from chassis.tracing import instrument_http

log = structlog.get_logger("chassis.http")

ReadinessCheck = Callable[[], Awaitable[None]]

REQUEST_ID_HEADER: Final = "X-Request-ID"
CORRELATION_ID_HEADER: Final = "X-Correlation-ID"
DEFAULT_READINESS_TIMEOUT_S: Final = 2.0
# Ids from clients end up in logs and events: accept only short, plain tokens.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_UNMATCHED_ROUTE: Final = "unmatched"
# Probes and scrapers call these every few seconds; their access lines are debug-level noise.
_QUIET_ROUTES: Final = frozenset({"/health/live", "/health/ready", "/metrics"})


def _accepted_id(value: str | None) -> str | None:
    return value if value is not None and _ACCEPTABLE_ID.fullmatch(value) else None


def _route_template(scope: Scope) -> str:
    # The template (`/v1/orders/{order_id}`), never the concrete path: paths can carry voucher codes
    # or member ids, and one label value per id would explode the metrics' cardinality.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _UNMATCHED_ROUTE


class RequestContextMiddleware(HttpMiddleware):
    """Request and correlation ids, the access log line and the HTTP metrics of each request."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        request_id = _accepted_id(headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
        # A request that arrives without a correlation id starts a new conversation named after it.
        correlation_id = _accepted_id(headers.get(CORRELATION_ID_HEADER)) or request_id
        status = 500
        started = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = request_id
                response_headers[CORRELATION_ID_HEADER] = correlation_id
            await send(message)

        with bind_correlation(correlation_id, request_id=request_id):
            try:
                await self.app(scope, receive, send_with_ids)
            finally:
                elapsed = time.perf_counter() - started
                method, route = scope["method"], _route_template(scope)
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_LATENCY.labels(method, route, str(status)).observe(elapsed)
                log.log(
                    logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                    "http_request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


_BODY_LIMIT_ATTR: Final = "__orchard_body_limit__"
_UPLOAD: Final = "upload"


def body_limit(max_bytes: int) -> Callable[[], None]:
    """A dependency declaring that its route accepts bodies up to `max_bytes`.

    `@router.post(..., dependencies=[Depends(body_limit(64 * 2**20))])`.
    """

    def declared_body_limit() -> None:
        return None

    setattr(declared_body_limit, _BODY_LIMIT_ATTR, max_bytes)
    return declared_body_limit


def upload_body() -> None:
    """A dependency marking an upload route: bodies up to `Settings.http_max_upload_bytes`."""
    return None


setattr(upload_body, _BODY_LIMIT_ATTR, _UPLOAD)


class BodyTooLarge(Problem):
    def __init__(self, limit: int, *, upload: bool = False) -> None:
        if upload:
            code, detail = (
                "upload_too_large",
                f"The upload is larger than the {limit} bytes this route accepts; split the file.",
            )
        else:
            code, detail = (
                "payload_too_large",
                f"The request body is larger than the {limit} bytes this route accepts.",
            )
        super().__init__(413, code, detail=detail)


@dataclass(frozen=True)
class _RoutePolicy:
    needs_token: bool
    limit: int
    upload: bool = False


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependencies(sub)


def _route_policy(route: BaseRoute, settings: Settings) -> _RoutePolicy:
    if not isinstance(route, APIRoute):
        return _RoutePolicy(needs_token=False, limit=settings.http_max_body_bytes)
    needs_token = False
    declared: int | str | None = None
    for dependant in _dependencies(route.dependant):
        needs_token = needs_token or requires_token(dependant.call)
        marker = getattr(dependant.call, _BODY_LIMIT_ATTR, None)
        if marker is not None:
            declared = marker
    if declared is None and any(
        isinstance(field.field_info, params.Form | params.File)
        for dependant in _dependencies(route.dependant)
        for field in dependant.body_params
    ):
        declared = _UPLOAD
    if declared == _UPLOAD:
        limit = settings.http_max_upload_bytes
    elif isinstance(declared, int):
        limit = declared
    else:
        limit = settings.http_max_body_bytes
    return _RoutePolicy(needs_token=needs_token, limit=limit, upload=declared is not None)


class BodyGuardMiddleware(HttpMiddleware):
    """Refuses anonymous requests to token routes (401) and oversized bodies (413) unread.

    FastAPI reads and parses a body before running a route's dependencies, so without this layer an
    anonymous client could make every replica read (and parse) as much as it likes. When the route
    first asks for its body, the router has matched it (`scope["route"]`): whether it needs a token
    and its body limit are worked out once per route from its dependency tree (`require_roles`,
    `body_limit`, `upload_body`, form or file parameters). A missing or invalid token, or a declared
    `Content-Length` over the limit, is refused without reading anything; a chunked body is counted
    as it arrives and cut off at the limit. Whatever the app then makes of the refused read, the
    client gets the refusal. Role checks (403) stay with the route's dependency.
    """

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        super().__init__(app)
        self.fastapi_app = fastapi_app
        self._policies: dict[int, tuple[BaseRoute, _RoutePolicy]] = {}

    def _policy(self, route: object, settings: Settings) -> _RoutePolicy:
        if not isinstance(route, BaseRoute):
            return _RoutePolicy(needs_token=False, limit=settings.http_max_body_bytes)
        cached = self._policies.get(id(route))
        if cached is None or cached[0] is not route:
            cached = self._policies[id(route)] = (route, _route_policy(route, settings))
        return cached[1]

    def _refusal(self, scope: Scope, settings: Settings) -> tuple[Problem | None, _RoutePolicy]:
        policy = self._policy(scope.get("route"), settings)
        headers = Headers(scope=scope)
        if policy.needs_token:
            scheme, token = get_authorization_scheme_param(headers.get("authorization"))
            try:
                authenticate(scheme, token, settings)
            except Problem as problem:
                return problem, policy
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > policy.limit:
            return BodyTooLarge(policy.limit, upload=policy.upload), policy
        return None, policy

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings = self.fastapi_app.state.settings
        refusal: Problem | None = None
        checked = False
        policy = _RoutePolicy(needs_token=False, limit=settings.http_max_body_bytes)
        received = 0
        app_started = False  # the app's own answer began before any refusal
        refused = False

        async def guarded_receive() -> Message:
            nonlocal refusal, checked, policy, received
            if not checked:
                checked = True
                refusal, policy = self._refusal(scope, settings)
            if refusal is not None:
                raise refusal
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > policy.limit:
                    refusal = BodyTooLarge(policy.limit, upload=policy.upload)
                    raise refusal
            return message

        async def refuse_once() -> None:
            nonlocal refused
            if not refused and refusal is not None:
                refused = True
                await refusal.to_response()(scope, receive, send)

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if refusal is not None and not app_started:
                # Whatever the app made of the refused read (a 400 from the body parser, say), the
                # client learns the real reason.
                await refuse_once()
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refusal is None or app_started:
                raise
        if refusal is not None and not app_started:
            await refuse_once()


class DownloadTimedOut(Exception):
    """A streamed download ran past its time limit and was cut off."""


class BoundedStreamingResponse(StreamingResponse):
    """A download that may run for `timeout_s` at most, however slow the database or the client.

    Past the limit the stream is aborted and logged: the client's connection is broken off before the
    body's end, so it sees a failed download, never a short file that looks complete. Its queries
    should carry the same `statement_timeout`.
    """

    def __init__(self, content: Any, *, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await super().__call__(scope, receive, send)
        except (TimeoutError, asyncpg.QueryCanceledError):
            log.warning("download_timed_out", route=_route_template(scope), timeout_s=self.timeout_s)
            raise DownloadTimedOut(f"the download ran past {self.timeout_s:g} s and was cut off") from None


def _describe_failure(error: BaseException) -> str:
    # Readiness answers reach anyone who can reach the port: no DSN passwords, no contact details.
    message = _URL_CREDENTIALS.sub("***@", redact_text(str(error)))[:200]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


async def _run_check(check: ReadinessCheck, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout=timeout_s)
    except TimeoutError:
        return f"failed: timed out after {timeout_s:g}s"
    except Exception as error:
        return f"failed: {_describe_failure(error)}"
    return "ok"


class Readiness(BaseModel):
    """`ready` or `unavailable`, and each check's outcome: `ok` or `failed: <why>`."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


def _health_router(checks: Mapping[str, ReadinessCheck], timeout_s: float) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/health/ready",
        summary="Every dependency answers (200) or which one does not and why (503)",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "At least one readiness check failed"}},
    )
    async def ready() -> JSONResponse:
        names = list(checks)
        results = await asyncio.gather(*(_run_check(checks[name], timeout_s) for name in names))
        outcome = dict(zip(names, results, strict=True))
        failed = {name: result for name, result in outcome.items() if result != "ok"}
        if failed:
            log.warning("readiness_check_failed", checks=failed)
            return JSONResponse({"status": "unavailable", "checks": outcome}, status_code=503)
        return JSONResponse({"status": "ready", "checks": outcome})

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {EXPOSITION_CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=EXPOSITION_CONTENT_TYPE)

    return router


# Every client error of every route is a problem body (401 and 403 from the token check, 404, 409, 413,
# 422…): one range entry documents them all, and routes add their own codes with a description.
PROBLEM_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    "4XX": {"model": ProblemDetails, "description": "A client error (RFC 9457 problem details)"},
}


def _document_problems(app: FastAPI) -> None:
    """Serve the OpenAPI document with every 4xx answer described as what it is: a problem body
    (`application/problem+json`, `ProblemDetails`), also where a route names a code without a schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            describe_problem_responses(FastAPI.openapi(app))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_http_app(
    settings: Settings,
    *,
    title: str,
    readiness_checks: Mapping[str, ReadinessCheck],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    routers: Sequence[APIRouter] = (),
    readiness_timeout_s: float = DEFAULT_READINESS_TIMEOUT_S,
) -> FastAPI:
    """A service's FastAPI app. Add routes with `routers=[...]` or `app.include_router(router)`.

    `readiness_checks` raise (or hang) when their dependency is unavailable; they run concurrently,
    each bounded by `readiness_timeout_s`. `settings` is kept on `app.state.settings` for the auth
    dependency.
    """
    app = FastAPI(
        title=title,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=PROBLEM_RESPONSES,
    )
    app.state.settings = settings
    _document_problems(app)
    install_problem_handlers(app)
    # Outside the problem layer, inside the request context: refusals still get ids and metrics.
    app.add_middleware(BodyGuardMiddleware, fastapi_app=app)
    # Added last so it is the outermost layer: it also sees (and ids) the 500s the problem layer makes.
    app.add_middleware(RequestContextMiddleware)
    app.include_router(_health_router(readiness_checks, readiness_timeout_s))
    for router in routers:
        app.include_router(router)
    instrument_http(app)
    return app

"""RFC 9457 problem details: every HTTP error any service returns has this one machine-readable shape.

`{"type", "title", "status", "detail", "code", "errors": [{"field", "code", "message"}]}` served as
`application/problem+json`. `code` is the stable machine-readable reason (also the last segment of
`type`); `errors` names each invalid field, as IPA rejections do on Kafka.

Services raise `Problem` directly, or raise their typed domain errors and map each type once with
`register_error`, which the DLQ can also consult (`lookup_error`) so one error has one code everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, TypedDict

import asyncpg
import structlog
from asyncpg.exceptions._base import DataError as QueryArgumentError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from chassis.asgi import HttpMiddleware

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# A URN names the problem kind without promising a dereferenceable documentation page.
PROBLEM_TYPE_PREFIX: Final = "urn:orchard:problem:"


class FieldError(TypedDict):
    field: str
    code: str
    message: str


class FieldErrorDetails(BaseModel):
    """One invalid field in a problem body, for OpenAPI documentation."""

    field: str
    code: str
    message: str


class ProblemDetails(BaseModel):
    """The problem body, for OpenAPI documentation."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    code: str
    errors: list[FieldErrorDetails] | None = None


_PROBLEM_SCHEMA_REF: Final = "#/components/schemas/ProblemDetails"


def _is_client_error(status: str) -> bool:
    return status.upper() == "4XX" or (len(status) == 3 and status.startswith("4") and status.isdigit())


def describe_problem_responses(document: dict[str, Any]) -> None:
    """Describe every 4xx response of an OpenAPI document as a problem body, in place.

    FastAPI files a response model under `application/json`; problems are served as
    `application/problem+json`, and a status a route documents with a description alone gets the
    problem schema too, so a client (or a schema-driven test) knows every error's shape.
    """
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if not _is_client_error(str(status)) or set(content) - {"application/json"}:
                    continue
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _PROBLEM_SCHEMA_REF}}}


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def _status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class Problem(Exception):
    """An HTTP error as a value: raise it anywhere under a route and the client gets a problem body."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        *,
        detail: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or code or _status_title(status))
        self.status = status
        self.code = code or _status_code_name(status)
        self.type = f"{PROBLEM_TYPE_PREFIX}{self.code}"
        self.title = title or _status_title(status)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers) if headers is not None else None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        body["code"] = self.code
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def to_response(self) -> Response:
        return JSONResponse(
            self.to_dict(), status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE
        )


def invalid_field(
    field: str, code: str, message: str, *, problem: str = "validation_failed", detail: str | None = None
) -> Problem:
    """A 422 about one request field (`body.member_id`), for a check made past request validation: the
    problem `validation_failed` unless said, its detail naming the field without where it was
    (`Invalid request: member_id`) unless given."""
    name = field.split(".", 1)[-1]
    return Problem(
        422,
        problem,
        detail=detail or f"Invalid request: {name}",
        errors=[{"field": field, "code": code, "message": message}],
    )


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    code: str
    title: str | None = None


_ERROR_MAPPINGS: dict[type[BaseException], ErrorMapping] = {}


def register_error(
    error_type: type[BaseException], status: int, code: str, *, title: str | None = None
) -> None:
    """Map a typed domain error to an HTTP status and a stable code, once for the whole process.

    Subclasses inherit their base's mapping unless registered themselves. Registering the same type
    again with a different mapping is a programming error and fails loudly.
    """
    mapping = ErrorMapping(status, code, title)
    existing = _ERROR_MAPPINGS.get(error_type)
    if existing is not None and existing != mapping:
        raise ValueError(f"{error_type.__qualname__} is already mapped to {existing}")
    _ERROR_MAPPINGS[error_type] = mapping


def lookup_error(error: BaseException) -> ErrorMapping | None:
    """The mapping registered for this error's type or its nearest registered base."""
    for cls in type(error).__mro__:
        mapping = _ERROR_MAPPINGS.get(cls)
        if mapping is not None:
            return mapping
    return None


def problem_for(error: BaseException) -> Problem | None:
    """The problem a registered domain error becomes; its message is written for clients."""
    mapping = lookup_error(error)
    if mapping is None:
        return None
    return Problem(mapping.status, mapping.code, title=mapping.title, detail=str(error) or None)


def _field_path(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location)


async def _handle_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.to_response()


async def _handle_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The offending input values are left out on purpose: they may be contact details or codes.
    errors = [
        FieldError(field=_field_path(error["loc"]), code=error["type"], message=error["msg"])
        for error in exc.errors()
    ]
    fields = ", ".join(dict.fromkeys(error["field"] for error in errors))
    return Problem(422, "validation_failed", detail=f"Invalid request: {fields}", errors=errors).to_response()


async def _handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = _status_title(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return Problem(exc.status_code, detail=detail, headers=exc.headers).to_response()


# Values Postgres cannot take (NUL bytes, numbers out of a column's range, malformed dates) and values
# asyncpg cannot encode for a query (an int past 64 bits) are the client's input, not a server fault.
# Request models refuse them first (chassis.inputs); this is the last resort. The database's message
# quotes SQL and values, so it is logged, never sent.
_INPUT_DATA_ERRORS: Final = (asyncpg.exceptions.DataError, QueryArgumentError)


def input_data_problem(error: BaseException) -> Problem | None:
    """The 422 a database data error becomes, or None when `error` is not one."""
    if not isinstance(error, _INPUT_DATA_ERRORS):
        return None
    log.warning("input_refused_by_database", error_type=type(error).__name__)
    message = "A value cannot be stored (a NUL byte, a number out of range or a malformed value)."
    return invalid_field("request", "invalid_value", message, problem="invalid_value", detail=message)


async def _handle_data_error(_request: Request, exc: Exception) -> Response:
    problem = input_data_problem(exc)
    assert problem is not None
    return problem.to_response()


class ProblemMiddleware(HttpMiddleware):
    """Turns exceptions that escape every route handler into problems.

    Registered domain errors become their mapped problem; anything else is logged with its traceback
    and answered with a bare 500 that reveals nothing about the internals.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            problem = problem_for(exc) or input_data_problem(exc)
            if problem is None:
                log.exception("unhandled_exception", method=scope["method"])
                problem = Problem(500, "internal_error", detail="An unexpected error occurred.")
            if response_started:
                # Half a response is on the wire: the server must close the connection.
                raise
            await problem.to_response()(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of `app` a problem body (create_http_app already does this)."""
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    for data_error in _INPUT_DATA_ERRORS:
        app.add_exception_handler(data_error, _handle_data_error)
    app.add_middleware(ProblemMiddleware)

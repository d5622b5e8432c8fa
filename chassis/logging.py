"""Structured JSON logs with correlation ids and PII redaction, for structlog and stdlib alike.

Every line is one JSON object on stdout: `timestamp` (UTC ISO 8601), `level`, `logger`, `service`,
`event`, plus whatever ids are bound in the current context (`correlation_id`, `causation_id`,
`event_id`, `request_id`). Third-party libraries that log through the standard library (uvicorn,
aiokafka, faststream) pass through the same processors, so their lines are JSON and redacted too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from chassis.settings import Settings

MASK: Final = "***"

# Values under these keys are secrets or personal data whatever they look like. `code` is a voucher
# code; suffix matching catches `recipient_email`, `access_token`, `jwt_secret` and the like, while
# `status_code` or `reason_code` stay readable because only the exact `code` keys are listed.
_SENSITIVE_KEYS: Final = frozenset(
    {
        "email",
        "phone",
        "code",
        "codes",
        "voucher_code",
        "token",
        "password",
        "authorization",
        "secret",
        "pin",
        "otp",
        "api_key",
        "cookie",
        "set_cookie",
    }
)
_SENSITIVE_SUFFIXES: Final = tuple(
    f"_{word}" for word in ("email", "phone", "token", "password", "secret", "pin", "api_key")
)

_EMAIL: Final = re.compile(
    r"(?P<local>[^\s@<>()\[\]\\,;:\"]+)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
)
# E.164: a plus sign and 7 to 15 digits; single spaces, dots or hyphens between digits are common in
# free text and must not let a number slip through.
_PHONE: Final = re.compile(r"(?<![\w+])\+[1-9](?:[ .\-]?\d){6,14}(?!\d)")
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_CONTEXT_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "faststream", "asyncio")
_ORCHARD_HANDLER: Final = "orchard"


def _is_sensitive_key(key: str) -> bool:
    normalised = key.lower().replace("-", "_")
    return normalised in _SENSITIVE_KEYS or normalised.endswith(_SENSITIVE_SUFFIXES)


def _mask_email(match: re.Match[str]) -> str:
    local = match["local"]
    # The first character helps tell addresses apart, unless it is the whole local part.
    shown = local[0] if len(local) > 1 else ""
    return f"{shown}{MASK}@{match['domain']}"


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    # Country code and last four digits are what support staff use to tell numbers apart; short
    # numbers keep only their last two so that most of the number is always hidden.
    if len(digits) >= 10:
        return f"+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"
    return f"+{'*' * (len(digits) - 2)}{digits[-2:]}"


def redact_text(text: str) -> str:
    """Mask e-mail addresses, E.164 phone numbers and JWTs inside free text."""
    text = _EMAIL.sub(_mask_email, text)
    text = _PHONE.sub(_mask_phone, text)
    return _JWT.sub(f"eyJ{MASK}", text)


def redact(value: Any) -> Any:
    """Redact a log value: mappings by key and recursively, sequences item by item, text by pattern."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def _redact_item(key: object, item: Any) -> Any:
    if isinstance(key, str) and _is_sensitive_key(key):
        # None stays visible: "no phone on file" is useful and reveals nothing.
        return None if item is None else MASK
    return redact(item)


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: nothing personal or secret leaves the process in a log line."""
    redacted: EventDict = redact(event_dict)
    return redacted


def _add_service(service_name: str) -> Processor:
    def add_service(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service_name)
        return event_dict

    return add_service


def _drop_noise(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn's `color_message` repeats `event` with terminal colours.
    event_dict.pop("color_message", None)
    # An id bound as None means "none for this unit of work" (and hides an outer value while bound);
    # a null on every line would add nothing.
    for key in ("causation_id", "event_id", "request_id"):
        if key in event_dict and event_dict[key] is None:
            del event_dict[key]
    return event_dict


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through one redacting JSON (or console) renderer.

    Call once at process start, before uvicorn and the Kafka broker are created; calling again
    replaces the previous configuration. uvicorn must be run with `log_config=None` and
    `access_log=False` (our HTTP middleware writes the access line, without query strings).
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service(settings.service_name),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_noise,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )
    _install_root_handler(formatter, stream, settings.log_level)
    _quiet_libraries()

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Module-level loggers are created at import, before configuration; without caching they
        # always follow the current configuration (a test or a second call may reconfigure).
        cache_logger_on_first_use=False,
    )


def _install_root_handler(formatter: logging.Formatter, stream: TextIO | None, level: str) -> None:
    """Our one handler on the root logger, replacing the one a previous configuration installed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(_ORCHARD_HANDLER)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _ORCHARD_HANDLER]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _quiet_libraries() -> None:
    # Libraries that install their own handlers (faststream at import, uvicorn from its dictConfig)
    # would print unredacted, non-JSON lines; make them hand their records to the root handler.
    library_loggers = set(_CONTEXT_LOGGERS) | {
        name for name in logging.root.manager.loggerDict if name.startswith("faststream")
    }
    for name in library_loggers:
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.propagate = True
    # uvicorn's own access line carries the query string and client address; ours replaces it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO (a line per SMS sent); its failures reach us as exceptions.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


@contextmanager
def bind_correlation(
    correlation_id: str, causation_id: str | None = None, **ids: str | None
) -> Iterator[None]:
    """Bind correlation ids (and e.g. `event_id=`, `request_id=`) to every log line in this context.

    The previous values come back when the block exits, so nested handling (an HTTP request that
    publishes, a consumer that handles one event after another) never leaks ids between units of work.
    """
    with structlog.contextvars.bound_contextvars(
        correlation_id=correlation_id, causation_id=causation_id, **ids
    ):
        yield


def current_correlation_id() -> str | None:
    """The correlation id bound in this context, for stamping the events a request or handler emits."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else None

"""Production by default (DESIGN.md §5 "Production by default").

A process is in development mode only when `ORCHARD_ENV=dev` (`orchard up` and `make up` set it). In
any other mode a service refuses to start while a secret is unset, still equal to the development
default published in this repository, or too short, and says so in one line per setting.

A setting is a secret when it is declared with `secret_setting(...)`: its development default is
what `orchard up` runs with, and outside development that very value is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

DEV = "dev"
MIN_SECRET_LENGTH = 32
_SECRET_MARK = "orchard_secret_min_length"


def secret_setting(dev_default: str | None, alias: str, *, min_length: int = MIN_SECRET_LENGTH) -> Any:
    """A settings field holding a secret. `dev_default` is used in development only; outside it the
    value must be set, differ from that default and have at least `min_length` characters."""
    default = SecretStr(dev_default) if dev_default is not None else None
    return Field(default=default, alias=alias, json_schema_extra={_SECRET_MARK: min_length})


def _text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


def secret_refusals(settings: BaseSettings) -> list[str]:
    """One line per secret of `settings` that is unset, a development default, or too short."""
    refusals = []
    for name, field in type(settings).model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or _SECRET_MARK not in extra:
            continue
        min_length = int(extra[_SECRET_MARK])  # type: ignore[arg-type]
        setting = field.alias or name.upper()
        value = _text(getattr(settings, name))
        if not value:
            refusals.append(f"{setting} is not set")
        elif field.default is not None and value == _text(field.default):
            refusals.append(f"{setting} is the development default, which is published in the source")
        elif len(value) < min_length:
            refusals.append(f"{setting} is shorter than {min_length} characters")
    return refusals


def https_refusal(setting: str, url: str) -> list[str]:
    """A line when `url` would be reached without TLS."""
    if urlsplit(url).scheme.lower() != "https":
        return [f"{setting}={url} is reached without TLS: use an https:// URL"]
    return []

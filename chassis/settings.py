"""Typed settings, read from the environment with safe local defaults (DESIGN.md §5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import structlog
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis.kafka_security import production_refusals as kafka_production_refusals
from chassis.production import DEV, https_refusal, secret_refusals, secret_setting
from contracts.registry import DLQ_RETENTION_MS

SERVICE_PORTS: dict[str, int] = {
    "order": 8101,
    "voucher": 8102,
    "delivery": 8103,
    "wallet": 8104,
    "redemption": 8105,
    "support": 8106,
}

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_JWT_SECRET = "orchard-local-dev-secret-change-me-in-production"
_DAY_MS = 24 * 60 * 60 * 1000

log = structlog.get_logger("chassis.settings")
_warned_legacy_names: set[str] = set()


class Settings(BaseSettings):
    """Settings every service shares (`ORCHARD_…`, plus `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL`);
    a service subclasses it for its own knobs, each named `ORCHARD_<SERVICE>_…` (`env_prefix`)."""

    model_config = SettingsConfigDict(env_prefix="ORCHARD_", extra="ignore", case_sensitive=False)
    legacy_env_prefixes: ClassVar[tuple[str, ...]] = ()
    """Prefixes a service's own settings had before `env_prefix`: `WALLET_X` is still read as
    `ORCHARD_WALLET_X` for one release, with a deprecation warning logged once per name."""
    legacy_env_groups: ClassVar[tuple[str, ...]] = ("",)
    """The settings that had a former name, by how their name goes on after `env_prefix`
    (`SMTP_`: `ORCHARD_DELIVERY_SMTP_HOST` was `ORCHARD_SMTP_HOST`); by default all of them."""

    service_name: str = Field(default="orchard", alias="ORCHARD_SERVICE")
    http_host: str = Field(default="127.0.0.1", alias="ORCHARD_HTTP_HOST")
    http_port: int = Field(default=0, alias="ORCHARD_HTTP_PORT")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    db_schema: str | None = Field(default=None, alias="ORCHARD_DB_SCHEMA")
    db_pool_min: int = Field(default=2, alias="ORCHARD_DB_POOL_MIN")
    db_pool_max: int = Field(default=10, alias="ORCHARD_DB_POOL_MAX")
    db_idle_in_transaction_timeout_s: float = Field(
        default=15.0, ge=0, alias="ORCHARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_S"
    )
    """Postgres ends a pooled session left idle inside a transaction this long (0: never). A process
    frozen mid-transaction (SIGSTOP, a stalled VM) would otherwise keep its row and inbox locks, and
    every replica wanting them waits until it wakes."""

    env: str = Field(default="production", alias="ORCHARD_ENV")
    """Only `dev` is development (`orchard up` sets it): elsewhere the secrets must be set (DESIGN.md §5)."""
    jwt_secret: SecretStr = secret_setting(DEV_JWT_SECRET, "ORCHARD_JWT_SECRET")
    jwt_issuer: str = Field(default="orchard-local", alias="ORCHARD_JWT_ISSUER")
    oidc_issuer: str | None = Field(default=None, alias="ORCHARD_OIDC_ISSUER")
    """The identity provider whose tokens are accepted, verified by its JWKS (DESIGN.md §5 "Identity").
    Once set, outside development only its tokens are accepted, never shared-secret ones."""
    oidc_audience: str = Field(default="orchard", alias="ORCHARD_OIDC_AUDIENCE")
    """What a provider's token must name in `aud`."""
    oidc_jwks_url: str | None = Field(default=None, alias="ORCHARD_OIDC_JWKS_URL")
    """Where the provider's keys are; by default the `jwks_uri` of the issuer's discovery document."""

    http_max_body_bytes: int = Field(default=2**20, ge=0, alias="ORCHARD_HTTP_MAX_BODY_BYTES")
    """A request body larger than this is answered 413 unless its route declares another limit."""
    http_max_upload_bytes: int = Field(default=50 * 2**20, ge=0, alias="ORCHARD_HTTP_MAX_UPLOAD_BYTES")
    """The limit of upload routes (multipart forms, routes marked with `chassis.http.upload_body`)."""
    http_download_timeout_s: float = Field(default=300.0, gt=0, alias="ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S")
    """A streamed download or export is cut off after this long (and so is any one of its queries)."""

    log_level: str = Field(default="INFO", alias="ORCHARD_LOG_LEVEL")
    log_json: bool = Field(default=True, alias="ORCHARD_LOG_JSON")

    consumer_max_attempts: int = Field(default=5, alias="ORCHARD_CONSUMER_MAX_ATTEMPTS")
    # How long the broker may hold a fetch while fewer than `consumer_fetch_min_bytes` are there. With
    # the default minimum (1 byte) a fetch is answered as soon as one record arrives, so this only says
    # how often an idle consumer asks again: each of the ~40 consumer groups of a system asked twice a
    # second at 500 ms, which cost the idle broker about 12 % of a core (6 % at 5 s).
    consumer_fetch_max_wait_ms: int = Field(default=5000, ge=0, alias="ORCHARD_CONSUMER_FETCH_MAX_WAIT_MS")
    consumer_fetch_min_bytes: int = Field(default=1, ge=1, alias="ORCHARD_CONSUMER_FETCH_MIN_BYTES")
    consumer_max_partition_fetch_bytes: int = Field(
        default=256 * 1024, ge=1024, alias="ORCHARD_CONSUMER_MAX_PARTITION_FETCH_BYTES"
    )
    """The most a consumer fetches from one partition at a time (Kafka's default is 1 MiB). A service runs
    one consumer per subscription (delivery has 26), each holding what it fetched until it is handled:
    256 KiB is about 400 events, most of a 500-event batch, and bounds what a backlog can pile up."""
    outbox_batch_size: int = Field(default=500, alias="ORCHARD_OUTBOX_BATCH_SIZE")
    outbox_poll_interval_s: float = Field(default=1.0, alias="ORCHARD_OUTBOX_POLL_INTERVAL")
    inbox_retention_days: int = Field(default=40, ge=1, alias="ORCHARD_INBOX_RETENTION_DAYS")
    """Handled event ids are remembered this long. At least as long as dead letters are kept
    (`DLQ_RETENTION_MS`, 30 days), or a letter replayed after its inbox row was purged is handled twice;
    checked at start. The margin covers Kafka deleting whole log segments: a letter can outlive
    `retention.ms` by up to the topic's `segment.ms` (a week by default)."""
    shutdown_grace_s: float = Field(default=20.0, alias="ORCHARD_SHUTDOWN_GRACE")

    var_dir: Path = Field(default=REPO_ROOT / "var", alias="ORCHARD_VAR_DIR")

    @model_validator(mode="before")
    @classmethod
    def _accept_legacy_names(cls, data: Any) -> Any:
        if not cls.legacy_env_prefixes or not isinstance(data, dict):
            return data
        for legacy, current in cls.legacy_env_names().items():
            value = data.pop(legacy, os.environ.get(legacy))
            if value is None:
                continue
            if current not in data:
                data[current] = value
            if legacy not in _warned_legacy_names:
                _warned_legacy_names.add(legacy)
                log.warning("deprecated_setting_name", name=legacy, use=current)
        return data

    @classmethod
    def legacy_env_names(cls) -> dict[str, str]:
        """Each former environment name mapped to the current one (see `legacy_env_prefixes`)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        names: dict[str, str] = {}
        for field in cls.model_fields.values():
            alias = field.alias or ""
            name = alias.removeprefix(prefix)
            if (
                alias.startswith(prefix)
                and alias not in _SHARED_NAMES
                and name.startswith(cls.legacy_env_groups)
            ):
                for legacy in cls.legacy_env_prefixes:
                    names[legacy + name] = alias
        return names

    def startup_refusals(self) -> list[str]:
        """Why these settings are unsafe to run with, one line per problem (empty: start)."""
        refusals = []
        if self.inbox_retention_days * _DAY_MS < DLQ_RETENTION_MS:
            refusals.append(
                f"ORCHARD_INBOX_RETENTION_DAYS={self.inbox_retention_days} is shorter than the dead-letter "
                f"retention DLQ_RETENTION_MS={DLQ_RETENTION_MS} ({DLQ_RETENTION_MS // _DAY_MS} days, "
                "contracts/registry.py): a dead letter replayed after its inbox row is purged would be "
                "handled twice"
            )
        if not self.is_dev:
            refusals += secret_refusals(self)
            if self.oidc_issuer:
                refusals += https_refusal("ORCHARD_OIDC_ISSUER", self.oidc_issuer)
            refusals += kafka_production_refusals()
            refusals += self.production_refusals()
        return refusals

    @property
    def is_dev(self) -> bool:
        return self.env.strip().lower() == DEV

    def production_refusals(self) -> list[str]:
        """A service's own reasons not to run outside development (besides its secrets)."""
        return []

    @property
    def schema_name(self) -> str:
        """The Postgres schema this service owns (defaults to the service name)."""
        return self.db_schema or self.service_name

    def default_port(self) -> int:
        return self.http_port or SERVICE_PORTS.get(self.service_name, 8100)


_SHARED_NAMES: frozenset[str] = frozenset(
    field.alias for field in Settings.model_fields.values() if field.alias
)

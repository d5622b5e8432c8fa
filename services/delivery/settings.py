"""The delivery service's settings: SMTP and Twilio-shaped providers per channel, worker counts and
rate limits, retries, the key that encrypts held codes, and the notifier's webhooks and filters.
Defaults point at the local sinks (DESIGN.md §5)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from chassis.production import https_refusal, secret_setting
from chassis.sealed_codes import dev_key_pair
from chassis.settings import Settings
from contracts.values import Channel

_DEV_CODE_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"orchard-local-dev-delivery-code-key").digest())


_DEV_PROVIDER_TOKEN = "local-token"
_DEV_SEAL_KEY = dev_key_pair()[0]


def _csv(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class DeliverySettings(Settings):
    model_config = SettingsConfigDict(env_prefix="ORCHARD_DELIVERY_", extra="ignore", case_sensitive=False)
    legacy_env_prefixes: ClassVar[tuple[str, ...]] = ("ORCHARD_",)
    legacy_env_groups: ClassVar[tuple[str, ...]] = (
        "SMTP_",
        "EMAIL_",
        "MESSAGE_ID_",
        "PROVIDER_",
        "SMS_",
        "WHATSAPP_",
        "NOTIFY_",
        "WEBHOOK_",
    )
    """The providers', notifier's and webhooks' settings were named without the service
    (`ORCHARD_SMTP_HOST`, now `ORCHARD_DELIVERY_SMTP_HOST`); the others always had it."""

    service_name: str = Field(default="delivery", alias="ORCHARD_SERVICE")
    db_pool_max: int = Field(default=30, alias="ORCHARD_DB_POOL_MAX")

    smtp_host: str = Field(default="127.0.0.1", alias="ORCHARD_DELIVERY_SMTP_HOST")
    smtp_port: int = Field(default=1025, alias="ORCHARD_DELIVERY_SMTP_PORT")
    smtp_starttls: bool = Field(default=False, alias="ORCHARD_DELIVERY_SMTP_STARTTLS")
    smtp_implicit_tls: bool = Field(default=False, alias="ORCHARD_DELIVERY_SMTP_TLS")
    smtp_username: str | None = Field(default=None, alias="ORCHARD_DELIVERY_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, alias="ORCHARD_DELIVERY_SMTP_PASSWORD")
    email_from: str = Field(
        default="Orchard Rewards <rewards@orchard.local>", alias="ORCHARD_DELIVERY_EMAIL_FROM"
    )
    message_id_domain: str = Field(default="orchard.local", alias="ORCHARD_DELIVERY_MESSAGE_ID_DOMAIN")
    smtp_session_messages: int = Field(default=100, ge=1, alias="ORCHARD_DELIVERY_SMTP_SESSION_MESSAGES")
    """Messages sent over one kept SMTP session before it is closed (many servers cap it near 100)."""
    smtp_session_idle_s: float = Field(default=20.0, gt=0, alias="ORCHARD_DELIVERY_SMTP_SESSION_IDLE")
    """A kept SMTP session idle this long is closed rather than reused (servers drop idle clients)."""

    sms_base_url: str = Field(default="http://127.0.0.1:8190", alias="ORCHARD_DELIVERY_SMS_BASE_URL")
    sms_account_sid: str = Field(default="ACorchardlocal", alias="ORCHARD_DELIVERY_SMS_ACCOUNT_SID")
    sms_auth_token: SecretStr = Field(
        default=SecretStr(_DEV_PROVIDER_TOKEN), alias="ORCHARD_DELIVERY_SMS_AUTH_TOKEN"
    )
    sms_from: str = Field(default="+15550100001", alias="ORCHARD_DELIVERY_SMS_FROM")
    whatsapp_base_url: str = Field(
        default="http://127.0.0.1:8190", alias="ORCHARD_DELIVERY_WHATSAPP_BASE_URL"
    )
    whatsapp_account_sid: str = Field(default="ACorchardlocal", alias="ORCHARD_DELIVERY_WHATSAPP_ACCOUNT_SID")
    whatsapp_auth_token: SecretStr = Field(
        default=SecretStr(_DEV_PROVIDER_TOKEN), alias="ORCHARD_DELIVERY_WHATSAPP_AUTH_TOKEN"
    )
    whatsapp_from: str = Field(default="+15550100002", alias="ORCHARD_DELIVERY_WHATSAPP_FROM")
    provider_timeout_s: float = Field(default=10.0, alias="ORCHARD_DELIVERY_PROVIDER_TIMEOUT")

    email_workers: int = Field(default=8, ge=0, alias="ORCHARD_DELIVERY_EMAIL_WORKERS")
    sms_workers: int = Field(default=8, ge=0, alias="ORCHARD_DELIVERY_SMS_WORKERS")
    whatsapp_workers: int = Field(default=4, ge=0, alias="ORCHARD_DELIVERY_WHATSAPP_WORKERS")
    email_rate_per_s: float = Field(default=1000.0, gt=0, alias="ORCHARD_DELIVERY_EMAIL_RATE")
    sms_rate_per_s: float = Field(default=1000.0, gt=0, alias="ORCHARD_DELIVERY_SMS_RATE")
    whatsapp_rate_per_s: float = Field(default=1000.0, gt=0, alias="ORCHARD_DELIVERY_WHATSAPP_RATE")
    """Sends per second per channel and per process (token bucket, bursts of a tenth of a second).
    The defaults keep out of the way of the local sinks; set your provider's limit divided by the
    number of replicas (e.g. WhatsApp Cloud API 80/s per number, Twilio per sender type)."""
    claim_batch: int = Field(default=20, ge=1, le=200, alias="ORCHARD_DELIVERY_CLAIM_BATCH")
    """Deliveries a worker claims per statement (under a lease) and then sends one after the other,
    each outcome committed before the next send. A batch stops at the first timeout, unreachable
    provider or 429, or after one provider timeout's worth of time, and puts the rest back."""
    consumer_max_batch: int = Field(default=100, ge=1, le=500, alias="ORCHARD_DELIVERY_CONSUMER_BATCH")
    """Records per fetched batch of each of the seven subscriptions (the chassis default is 500): each
    batch is held decoded while it is handled, and the batch handlers need no more than this to
    cost a few statements per batch."""
    queue_poll_interval_s: float = Field(default=0.5, gt=0, alias="ORCHARD_DELIVERY_POLL_INTERVAL")

    max_attempts: int = Field(default=5, ge=1, alias="ORCHARD_DELIVERY_MAX_ATTEMPTS")
    retry_base_s: float = Field(default=2.0, ge=0, alias="ORCHARD_DELIVERY_RETRY_BASE")
    retry_max_s: float = Field(default=300.0, ge=0, alias="ORCHARD_DELIVERY_RETRY_MAX")
    lease_s: float = Field(default=60.0, gt=0, alias="ORCHARD_DELIVERY_LEASE")
    recovery_interval_s: float = Field(default=10.0, gt=0, alias="ORCHARD_DELIVERY_RECOVERY_INTERVAL")
    fallback_default: bool = Field(default=False, alias="ORCHARD_DELIVERY_FALLBACK_DEFAULT")

    code_key: SecretStr = secret_setting(_DEV_CODE_KEY.decode(), "ORCHARD_DELIVERY_CODE_KEY")
    seal_key: SecretStr = secret_setting(_DEV_SEAL_KEY, "ORCHARD_DELIVERY_SEAL_KEY")
    """The private key (`id:base64`, X25519) opening the codes `voucher.issued` carries sealed; the
    voucher service holds its public half (`ORCHARD_VOUCHER_SEAL_PUBLIC_KEY`)."""
    seal_previous_key: SecretStr | None = Field(default=None, alias="ORCHARD_DELIVERY_SEAL_PREVIOUS_KEY")
    """The private key before the last rotation: codes sealed under it still open."""
    code_retention_days: int = Field(default=30, ge=0, alias="ORCHARD_DELIVERY_CODE_RETENTION_DAYS")
    templates_dir: Path | None = Field(default=None, alias="ORCHARD_DELIVERY_TEMPLATES_DIR")

    slack_webhook_url: str | None = Field(default=None, alias="ORCHARD_DELIVERY_NOTIFY_SLACK_URL")
    teams_webhook_url: str | None = Field(default=None, alias="ORCHARD_DELIVERY_NOTIFY_TEAMS_URL")
    notify_order_states: str = Field(
        default="cancelled,on_hold,delivery_failed", alias="ORCHARD_DELIVERY_NOTIFY_ORDER_STATES"
    )
    notify_campaigns: str = Field(default="", alias="ORCHARD_DELIVERY_NOTIFY_CAMPAIGNS")
    notify_events: str = Field(
        default="order_state,delivery_failed,stock_low,sla_breached,webhook_disabled,approval,campaign,campaign_budget",
        alias="ORCHARD_DELIVERY_NOTIFY_EVENTS",
    )
    notify_interval_s: float = Field(default=5.0, gt=0, alias="ORCHARD_DELIVERY_NOTIFY_INTERVAL")
    notify_burst_threshold: int = Field(default=5, ge=1, alias="ORCHARD_DELIVERY_NOTIFY_BURST_THRESHOLD")

    webhook_workers: int = Field(default=32, ge=0, le=1000, alias="ORCHARD_DELIVERY_WEBHOOK_WORKERS")
    """Webhook POSTs in flight at once in this process (a pool apart from the message workers)."""
    webhook_concurrency: int = Field(default=4, ge=1, le=100, alias="ORCHARD_DELIVERY_WEBHOOK_CONCURRENCY")
    """POSTs in flight at once to one webhook, across replicas: a slow endpoint holds no more."""
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60, alias="ORCHARD_DELIVERY_WEBHOOK_TIMEOUT")
    """Whole POST, connection to the last byte read of the answer."""
    webhook_lease_s: float = Field(default=60.0, gt=0, alias="ORCHARD_DELIVERY_WEBHOOK_LEASE")
    webhook_max_response_bytes: int = Field(
        default=65536, ge=0, alias="ORCHARD_DELIVERY_WEBHOOK_MAX_RESPONSE_BYTES"
    )
    webhook_retry_base_s: float = Field(default=10.0, ge=0, alias="ORCHARD_DELIVERY_WEBHOOK_RETRY_BASE")
    webhook_retry_max_s: float = Field(default=3600.0, ge=0, alias="ORCHARD_DELIVERY_WEBHOOK_RETRY_MAX")
    webhook_disable_after_s: float = Field(
        default=86400.0, gt=0, alias="ORCHARD_DELIVERY_WEBHOOK_DISABLE_AFTER"
    )
    """A webhook answering nothing but failures for this long is disabled (and reported)."""
    webhook_rotation_overlap_s: float = Field(
        default=86400.0, ge=0, alias="ORCHARD_DELIVERY_WEBHOOK_ROTATION_OVERLAP"
    )
    """After a secret is rotated, the previous one keeps signing next to the new one this long."""
    webhook_retention_days: int = Field(default=30, ge=1, alias="ORCHARD_DELIVERY_WEBHOOK_RETENTION_DAYS")
    """Delivered events are kept (for the delivery log and replay) this many days."""
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, alias="ORCHARD_DELIVERY_WEBHOOK_POLL_INTERVAL")
    webhook_topics_refresh_s: float = Field(
        default=30.0, gt=0, alias="ORCHARD_DELIVERY_WEBHOOK_TOPICS_REFRESH"
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_post(self) -> DeliverySettings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError(
                "ORCHARD_DELIVERY_WEBHOOK_LEASE must be longer than ORCHARD_DELIVERY_WEBHOOK_TIMEOUT"
            )
        return self

    def production_refusals(self) -> list[str]:
        """Outside development, messages leave only over TLS."""
        refusals = []
        if not (self.smtp_starttls or self.smtp_implicit_tls):
            refusals.append(
                "ORCHARD_DELIVERY_SMTP_STARTTLS / ORCHARD_DELIVERY_SMTP_TLS: "
                f"{self.smtp_host}:{self.smtp_port} would be reached without TLS; set one of them"
            )
        # A channel with no workers sends nothing, so it needs no provider account.
        for name, workers, url, token in (
            ("SMS", self.sms_workers, self.sms_base_url, self.sms_auth_token),
            ("WHATSAPP", self.whatsapp_workers, self.whatsapp_base_url, self.whatsapp_auth_token),
        ):
            if workers == 0:
                continue
            refusals += https_refusal(f"ORCHARD_DELIVERY_{name}_BASE_URL", url)
            if token.get_secret_value() in {"", _DEV_PROVIDER_TOKEN}:
                refusals.append(
                    f"ORCHARD_DELIVERY_{name}_AUTH_TOKEN is not set "
                    f"(or set ORCHARD_DELIVERY_{name}_WORKERS=0 to send none)"
                )
        return refusals

    def workers(self, channel: Channel) -> int:
        return {Channel.EMAIL: self.email_workers, Channel.SMS: self.sms_workers}.get(
            channel, self.whatsapp_workers
        )

    def rate_per_s(self, channel: Channel) -> float:
        return {Channel.EMAIL: self.email_rate_per_s, Channel.SMS: self.sms_rate_per_s}.get(
            channel, self.whatsapp_rate_per_s
        )

    @property
    def order_state_filter(self) -> frozenset[str]:
        return _csv(self.notify_order_states)

    @property
    def campaign_filter(self) -> frozenset[str]:
        return _csv(self.notify_campaigns)

    @property
    def notified_events(self) -> frozenset[str]:
        return _csv(self.notify_events)

    def webhook_targets(self) -> dict[str, str]:
        """Notification targets by kind (`slack`, `teams`) for the webhooks configured."""
        targets = {"slack": self.slack_webhook_url, "teams": self.teams_webhook_url}
        return {kind: url for kind, url in targets.items() if url}

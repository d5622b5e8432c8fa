"""The redemption service's own knobs (env prefix `ORCHARD_REDEMPTION_`), with safe local defaults."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from chassis.production import secret_setting
from chassis.settings import Settings
from services.redemption.retention.domain import RetentionAction

PRODUCER = "redemption"


class RedemptionSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="ORCHARD_REDEMPTION_", extra="ignore", case_sensitive=False)

    service_name: str = Field(default="redemption", alias="ORCHARD_SERVICE")

    # Storefront saga: a step without an answer is asked again after a backoff; an order that never
    # shows up is given up on after so many asks and the points are refunded.
    saga_redrive_interval_s: float = Field(default=5.0, alias="ORCHARD_REDEMPTION_SAGA_REDRIVE_INTERVAL")
    saga_retry_base_s: float = Field(default=30.0, alias="ORCHARD_REDEMPTION_SAGA_RETRY_BASE")
    saga_retry_cap_s: float = Field(default=600.0, alias="ORCHARD_REDEMPTION_SAGA_RETRY_CAP")
    saga_max_order_attempts: int = Field(default=8, alias="ORCHARD_REDEMPTION_SAGA_MAX_ORDER_ATTEMPTS")

    # Offer validation.
    otp_key: SecretStr = secret_setting("orchard-local-otp-key-change-me", "ORCHARD_REDEMPTION_OTP_KEY")
    # Keys every PIN before argon2 hashes it; kept outside the database, so stolen hashes alone are useless.
    pin_pepper: SecretStr = secret_setting(
        "orchard-local-pin-pepper-change-me-now", "ORCHARD_REDEMPTION_PIN_PEPPER"
    )
    otp_ttl_s: int = Field(default=300, alias="ORCHARD_REDEMPTION_OTP_TTL")
    otp_max_attempts: int = Field(default=5, alias="ORCHARD_REDEMPTION_OTP_MAX_ATTEMPTS")
    otp_channel: str = Field(default="sms", alias="ORCHARD_REDEMPTION_OTP_CHANNEL")
    pin_max_attempts: int = Field(default=5, ge=1, alias="ORCHARD_REDEMPTION_PIN_MAX_ATTEMPTS")
    # The first lock lasts PIN_LOCKOUT seconds, each further one twice the one before, up to the max.
    pin_lockout_s: int = Field(default=900, ge=1, alias="ORCHARD_REDEMPTION_PIN_LOCKOUT")
    pin_lockout_max_s: int = Field(default=7 * 86400, ge=1, alias="ORCHARD_REDEMPTION_PIN_LOCKOUT_MAX")
    # Argon2 hashes and verifications running at once in a process (each one takes tens of MiB).
    argon2_concurrency: int = Field(default=2, ge=1, alias="ORCHARD_REDEMPTION_ARGON2_CONCURRENCY")

    # Abuse controls: per-partner and per-member limits, counted in Postgres so every replica shares them.
    partner_validations_per_minute: int = Field(
        default=120, ge=1, alias="ORCHARD_REDEMPTION_PARTNER_VALIDATIONS_PER_MINUTE"
    )
    partner_otp_sends_per_minute: int = Field(
        default=60, ge=1, alias="ORCHARD_REDEMPTION_PARTNER_OTP_SENDS_PER_MINUTE"
    )
    member_otp_sends_per_hour: int = Field(
        default=5, ge=1, alias="ORCHARD_REDEMPTION_MEMBER_OTP_SENDS_PER_HOUR"
    )
    # A partner's `redeemed_at` (a till that was offline) is kept only this far back, and only this far
    # ahead (clock skew); the service's clock decides the redemption's time either way.
    redeemed_at_max_backdate_s: int = Field(
        default=900, ge=0, alias="ORCHARD_REDEMPTION_REDEEMED_AT_MAX_BACKDATE"
    )
    redeemed_at_max_ahead_s: int = Field(default=60, ge=0, alias="ORCHARD_REDEMPTION_REDEEMED_AT_MAX_AHEAD")

    # Exports.
    export_interval_s: float = Field(default=1.0, alias="ORCHARD_REDEMPTION_EXPORT_INTERVAL")
    export_chunk_rows: int = Field(default=1000, alias="ORCHARD_REDEMPTION_EXPORT_CHUNK_ROWS")
    export_retention_days: int = Field(default=7, alias="ORCHARD_REDEMPTION_EXPORT_RETENTION_DAYS")

    # Retention, per record type: days kept, then purged or anonymised.
    retention_interval_s: float = Field(default=3600.0, alias="ORCHARD_REDEMPTION_RETENTION_INTERVAL")
    retention_offer_days: int = Field(default=730, alias="ORCHARD_REDEMPTION_RETENTION_OFFER_DAYS")
    retention_offer_action: RetentionAction = Field(
        default=RetentionAction.ANONYMISE, alias="ORCHARD_REDEMPTION_RETENTION_OFFER_ACTION"
    )
    retention_voucher_days: int = Field(default=730, alias="ORCHARD_REDEMPTION_RETENTION_VOUCHER_DAYS")
    retention_voucher_action: RetentionAction = Field(
        default=RetentionAction.ANONYMISE, alias="ORCHARD_REDEMPTION_RETENTION_VOUCHER_ACTION"
    )
    retention_storefront_days: int = Field(default=2555, alias="ORCHARD_REDEMPTION_RETENTION_STOREFRONT_DAYS")
    retention_storefront_action: RetentionAction = Field(
        default=RetentionAction.ANONYMISE, alias="ORCHARD_REDEMPTION_RETENTION_STOREFRONT_ACTION"
    )
    retention_otp_days: int = Field(default=1, alias="ORCHARD_REDEMPTION_RETENTION_OTP_DAYS")

"""Production by default (DESIGN.md §5): outside ORCHARD_ENV=dev nothing starts with a development key."""

import os
import subprocess
import sys

import pytest

from chassis.settings import SERVICE_PORTS, Settings
from deploy.infra.net import free_port
from deploy.infra.paths import REPO_ROOT
from deploy.runner import StackConfig, production_refusals
from deploy.secrets import fresh_secrets
from deploy.tests.test_cli import orchard
from services.delivery.settings import DeliverySettings
from services.redemption.settings import RedemptionSettings
from services.voucher.settings import VoucherSettings

SECRETS = set(fresh_secrets(SERVICE_PORTS))
# What a real deployment of delivery sets besides its key: TLS to every provider, real accounts.
DELIVERY_PRODUCTION = {
    "ORCHARD_DELIVERY_SMTP_STARTTLS": "true",
    "ORCHARD_DELIVERY_SMS_BASE_URL": "https://api.twilio.example",
    "ORCHARD_DELIVERY_SMS_AUTH_TOKEN": "a-real-provider-token-0123456789",
    "ORCHARD_DELIVERY_WHATSAPP_BASE_URL": "https://api.twilio.example",
    "ORCHARD_DELIVERY_WHATSAPP_AUTH_TOKEN": "another-provider-token-0123456789",
}


# What a production deployment sets for Kafka: SASL_SSL as the service's own principal.
KAFKA_PRODUCTION = {
    "ORCHARD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "ORCHARD_KAFKA_SASL_USERNAME": "orchard-voucher",
    "ORCHARD_KAFKA_SASL_PASSWORD": "a-kafka-password-0123456789",
}


@pytest.fixture
def production(monkeypatch):
    """This process outside development, with none of the secrets set (Kafka security is)."""
    for name in [*SECRETS, *DELIVERY_PRODUCTION]:
        monkeypatch.delenv(name, raising=False)
    for name, value in KAFKA_PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORCHARD_ENV", "production")
    return monkeypatch


def test_outside_development_kafka_without_sasl_ssl_is_refused(production):
    production.setenv("ORCHARD_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    refused = Settings().startup_refusals()
    production.setenv("ORCHARD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    production.delenv("ORCHARD_KAFKA_SASL_PASSWORD")

    assert [line.split(":")[0] for line in refused[1:]] == ["ORCHARD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"]
    assert "ORCHARD_KAFKA_SASL_PASSWORD is not set (needed for SASL_SSL)" in Settings().startup_refusals()


def test_outside_development_every_development_key_is_refused_naming_its_setting(production):
    assert Settings().startup_refusals() == [
        "ORCHARD_JWT_SECRET is the development default, which is published in the source"
    ]
    voucher = VoucherSettings().startup_refusals()
    assert [line.split(" ")[0] for line in voucher] == [
        "ORCHARD_JWT_SECRET",
        "ORCHARD_VOUCHER_ENCRYPTION_KEYS",
        "ORCHARD_VOUCHER_LOOKUP_KEY",
        "ORCHARD_VOUCHER_SEAL_PUBLIC_KEY",
    ]
    assert "ORCHARD_DELIVERY_SEAL_KEY is the development default, which is published in the source" in (
        DeliverySettings().startup_refusals()
    )
    assert any(
        line.startswith("ORCHARD_REDEMPTION_OTP_KEY is the development default")
        for line in RedemptionSettings().startup_refusals()
    )


def test_in_development_the_development_keys_are_accepted(monkeypatch):
    monkeypatch.setenv("ORCHARD_ENV", "dev")
    for settings_class in (Settings, VoucherSettings, DeliverySettings, RedemptionSettings):
        assert settings_class().startup_refusals() == []


def test_an_empty_or_short_secret_is_refused(production):
    production.setenv("ORCHARD_JWT_SECRET", "")
    production.setenv("ORCHARD_REDEMPTION_OTP_KEY", "too-short")

    refusals = RedemptionSettings().startup_refusals()

    assert "ORCHARD_JWT_SECRET is not set" in refusals
    assert "ORCHARD_REDEMPTION_OTP_KEY is shorter than 32 characters" in refusals


def test_delivery_refuses_to_send_without_tls_or_with_the_local_provider_account(production):
    for name, value in fresh_secrets(SERVICE_PORTS).items():
        production.setenv(name, value)

    refusals = DeliverySettings().startup_refusals()
    for name, value in DELIVERY_PRODUCTION.items():
        production.setenv(name, value)

    assert [line.split(" ")[0] for line in refusals] == [
        "ORCHARD_DELIVERY_SMTP_STARTTLS",
        "ORCHARD_DELIVERY_SMS_BASE_URL=http://127.0.0.1:8190",
        "ORCHARD_DELIVERY_SMS_AUTH_TOKEN",
        "ORCHARD_DELIVERY_WHATSAPP_BASE_URL=http://127.0.0.1:8190",
        "ORCHARD_DELIVERY_WHATSAPP_AUTH_TOKEN",
    ]
    assert DeliverySettings().startup_refusals() == []
    production.delenv("ORCHARD_DELIVERY_WHATSAPP_AUTH_TOKEN")
    production.setenv("ORCHARD_DELIVERY_WHATSAPP_WORKERS", "0")
    assert DeliverySettings().startup_refusals() == [], "a channel that sends nothing needs no account"


def test_the_secrets_orchard_secrets_draws_satisfy_every_service(production):
    for name, value in {**fresh_secrets(SERVICE_PORTS), **DELIVERY_PRODUCTION}.items():
        production.setenv(name, value)

    assert production_refusals(StackConfig(REPO_ROOT, service_ports=SERVICE_PORTS, env="production")) == []


def test_a_service_started_outside_development_with_development_keys_exits_saying_which(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in SECRETS and key != "ORCHARD_ENV"}
    env |= {"ORCHARD_HTTP_PORT": str(free_port()), "ORCHARD_VAR_DIR": str(tmp_path), **KAFKA_PRODUCTION}
    # Nothing answers here: the service must stop before it connects to anything.
    env |= {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}

    result = subprocess.run(
        [sys.executable, "-m", "services.voucher"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    default = "is the development default, which is published in the source"
    assert result.stderr.strip().splitlines() == [
        f"orchard voucher: refusing to start: {setting} {default}"
        for setting in (
            "ORCHARD_JWT_SECRET",
            "ORCHARD_VOUCHER_ENCRYPTION_KEYS",
            "ORCHARD_VOUCHER_LOOKUP_KEY",
            "ORCHARD_VOUCHER_SEAL_PUBLIC_KEY",
        )
    ]


def test_orchard_up_outside_development_starts_nothing_and_names_each_setting_once(tmp_path):
    env = {"ORCHARD_ENV": "production", "ORCHARD_VAR_DIR": str(tmp_path), **KAFKA_PRODUCTION}
    env |= {name: "" for name in SECRETS}

    result = orchard("up", "--no-demo", env=env)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[0].startswith(
        "orchard: order, voucher, delivery, wallet, redemption, support: ORCHARD_JWT_SECRET is not set"
    )
    assert "orchard: voucher: ORCHARD_VOUCHER_LOOKUP_KEY is not set" in lines
    assert list(tmp_path.iterdir()) == [], "nothing was started or written"

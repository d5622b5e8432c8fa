from services.delivery.settings import DeliverySettings


def test_the_provider_notifier_and_webhook_settings_are_still_read_under_their_former_names(monkeypatch):
    monkeypatch.setenv("ORCHARD_SMTP_PORT", "2525")
    monkeypatch.setenv("ORCHARD_NOTIFY_SLACK_URL", "https://hooks.example/slack")
    monkeypatch.setenv("ORCHARD_WEBHOOK_WORKERS", "3")

    settings = DeliverySettings()

    assert settings.smtp_port == 2525
    assert settings.slack_webhook_url == "https://hooks.example/slack"
    assert settings.webhook_workers == 3


def test_the_delivery_name_wins_over_the_former_one(monkeypatch):
    monkeypatch.setenv("ORCHARD_SMS_BASE_URL", "http://former.example")
    monkeypatch.setenv("ORCHARD_DELIVERY_SMS_BASE_URL", "http://current.example")

    assert DeliverySettings().sms_base_url == "http://current.example"


def test_only_the_renamed_settings_have_a_former_name():
    former = DeliverySettings.legacy_env_names()

    assert former["ORCHARD_EMAIL_RATE"] == "ORCHARD_DELIVERY_EMAIL_RATE"
    assert former["ORCHARD_WEBHOOK_LEASE"] == "ORCHARD_DELIVERY_WEBHOOK_LEASE"
    assert "ORCHARD_CLAIM_BATCH" not in former
    assert "ORCHARD_CODE_KEY" not in former

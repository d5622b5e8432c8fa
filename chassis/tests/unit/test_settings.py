from typing import ClassVar

import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from structlog.testing import capture_logs

from chassis.dlq import dlq_retention_refusals
from chassis.service import ServiceSpec, run_service
from chassis.settings import Settings
from contracts.registry import DLQ_RETENTION_MS

DAY_MS = 24 * 3600 * 1000


def test_the_default_inbox_outlives_the_dead_letters_it_may_see_replayed():
    settings = Settings()

    assert settings.inbox_retention_days * DAY_MS >= DLQ_RETENTION_MS
    assert settings.startup_refusals() == []


def test_an_inbox_purged_before_the_dead_letters_refuses_in_one_line_naming_both_settings(monkeypatch):
    monkeypatch.setenv("ORCHARD_INBOX_RETENTION_DAYS", "14")

    [line] = Settings().startup_refusals()

    assert line.startswith("ORCHARD_INBOX_RETENTION_DAYS=14 is shorter than")
    assert "DLQ_RETENTION_MS=2592000000 (30 days" in line


def test_an_inbox_kept_exactly_as_long_as_the_dead_letters_is_enough(monkeypatch):
    monkeypatch.setenv("ORCHARD_INBOX_RETENTION_DAYS", str(DLQ_RETENTION_MS // DAY_MS))

    assert Settings().startup_refusals() == []


def test_a_service_with_a_short_inbox_retention_exits_before_starting_anything(monkeypatch, capsys):
    monkeypatch.setenv("ORCHARD_INBOX_RETENTION_DAYS", "7")
    monkeypatch.setenv("ORCHARD_SERVICE", "wallet")

    with pytest.raises(SystemExit) as exit_:
        run_service(ServiceSpec(title="never started"))

    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("orchard wallet: refusing to start: ORCHARD_INBOX_RETENTION_DAYS=7 is shorter")
    assert "DLQ_RETENTION_MS" in line


def test_dlq_topics_the_broker_keeps_longer_than_the_inbox_are_each_named():
    retention = {"a.dlq": 30 * DAY_MS, "b.dlq": 45 * DAY_MS, "c.dlq": -1}

    refusals = dlq_retention_refusals(40, retention)

    assert [line.split(" of ")[1].split(" ")[0] for line in refusals] == ["b.dlq", "c.dlq"]
    assert all(line.startswith("ORCHARD_INBOX_RETENTION_DAYS=40 is shorter than") for line in refusals)
    assert "retention.ms=3888000000 of b.dlq (45 days)" in refusals[0]
    assert "(forever)" in refusals[1]


class _RenamedSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="ORCHARD_SAMPLE_", extra="ignore", case_sensitive=False)
    legacy_env_prefixes: ClassVar[tuple[str, ...]] = ("SAMPLE_",)

    batch_size: int = Field(default=10, alias="ORCHARD_SAMPLE_BATCH_SIZE")


def test_a_setting_under_its_former_name_is_still_read_and_the_rename_is_logged_once(monkeypatch):
    monkeypatch.setenv("SAMPLE_BATCH_SIZE", "42")

    with capture_logs() as logs:
        first, second = _RenamedSettings(), _RenamedSettings()

    assert first.batch_size == second.batch_size == 42
    assert [entry for entry in logs if entry["event"] == "deprecated_setting_name"] == [
        {
            "event": "deprecated_setting_name",
            "log_level": "warning",
            "name": "SAMPLE_BATCH_SIZE",
            "use": "ORCHARD_SAMPLE_BATCH_SIZE",
        }
    ]


def test_the_current_name_wins_over_the_former_one(monkeypatch):
    monkeypatch.setenv("SAMPLE_BATCH_SIZE", "42")
    monkeypatch.setenv("ORCHARD_SAMPLE_BATCH_SIZE", "7")

    assert _RenamedSettings().batch_size == 7


def test_shared_settings_keep_their_names_under_a_service_prefix():
    assert _RenamedSettings.legacy_env_names() == {"SAMPLE_BATCH_SIZE": "ORCHARD_SAMPLE_BATCH_SIZE"}


class _PartlyRenamedSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="ORCHARD_SAMPLE_", extra="ignore", case_sensitive=False)
    legacy_env_prefixes: ClassVar[tuple[str, ...]] = ("ORCHARD_",)
    legacy_env_groups: ClassVar[tuple[str, ...]] = ("SMTP_",)

    smtp_port: int = Field(default=25, alias="ORCHARD_SAMPLE_SMTP_PORT")
    batch_size: int = Field(default=10, alias="ORCHARD_SAMPLE_BATCH_SIZE")


def test_only_the_settings_of_the_renamed_groups_have_a_former_name():
    assert _PartlyRenamedSettings.legacy_env_names() == {"ORCHARD_SMTP_PORT": "ORCHARD_SAMPLE_SMTP_PORT"}

"""Campaign lifecycle, expiry on issue, CSV parsing and the code vault."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidTag

from contracts.vouchers import CampaignStatus, ExpiryKind, ExpiryPolicy
from services.voucher.crypto import CodeVault, KeyConfigError, parse_keys
from services.voucher.csv_import import UnreadableFile, parse_codes
from services.voucher.domain import CampaignStateError, expiry_on_issue, next_campaign_status

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_campaign_status_moves_only_along_its_lifecycle():
    assert next_campaign_status(CampaignStatus.ACTIVE, "pause") is CampaignStatus.PAUSED
    assert next_campaign_status(CampaignStatus.PAUSED, "resume") is CampaignStatus.ACTIVE
    assert next_campaign_status(CampaignStatus.PAUSED, "end") is CampaignStatus.ENDED
    for status, action in [
        (CampaignStatus.ACTIVE, "resume"),
        (CampaignStatus.ENDED, "resume"),
        (CampaignStatus.ENDED, "end"),
        (CampaignStatus.PAUSED, "pause"),
    ]:
        with pytest.raises(CampaignStateError):
            next_campaign_status(status, action)


def test_expiry_on_issue_takes_the_earliest_of_the_code_and_the_policy():
    days = ExpiryPolicy(kind=ExpiryKind.DAYS_AFTER_ISSUE, days=30)
    assert expiry_on_issue(days, NOW, None) == NOW + timedelta(days=30)
    assert expiry_on_issue(days, NOW, NOW + timedelta(days=3)) == NOW + timedelta(days=3)
    fixed = ExpiryPolicy(kind=ExpiryKind.FIXED_DATE, expires_at=NOW + timedelta(days=10))
    assert expiry_on_issue(fixed, NOW, None) == NOW + timedelta(days=10)
    assert expiry_on_issue(ExpiryPolicy(kind=ExpiryKind.NONE), NOW, None) is None


def test_csv_rows_are_judged_one_by_one():
    raw = b"\xef\xbb\xbfCode,Value\nA-1,\nA-2,12.5\nA-1,\n\xff\nA-3,abc\n\nA 4,\nA-5,1,2,3\n"
    parsed = parse_codes(raw, now=NOW)
    assert [(c.row, c.code, c.value) for c in parsed.codes] == [
        (2, "A-1", None),
        (3, "A-2", pytest.approx(12.5)),
    ]
    assert [(p.row, p.code) for p in parsed.problems] == [
        (4, "duplicate_in_file"),
        (5, "bad_encoding"),
        (6, "invalid_row"),
        (8, "invalid_row"),
        (9, "invalid_row"),
    ]
    assert parsed.rows == 7  # the blank line is not a row


def test_a_file_without_a_code_column_is_unreadable():
    with pytest.raises(UnreadableFile):
        parse_codes(b"voucher,value\nX,1\n", now=NOW)
    with pytest.raises(UnreadableFile):
        parse_codes(b"", now=NOW)


def vault(keys: str, active: str | None = None) -> CodeVault:
    return CodeVault(parse_keys(keys), active, b"k" * 32)


KEY1 = "one:" + __import__("base64").b64encode(os.urandom(32)).decode()
KEY2 = "two:" + __import__("base64").b64encode(os.urandom(32)).decode()


def test_codes_are_sealed_under_the_active_key_and_read_after_rotation():
    old = vault(KEY1)
    digest = old.lookup_hash("SPR-ABC123")
    sealed = old.seal("SPR-ABC123", digest)
    assert b"SPR-ABC123" not in sealed.secret
    rotated = vault(f"{KEY2},{KEY1}", active="two")
    assert rotated.open(sealed.key_id, sealed.secret, digest) == "SPR-ABC123"
    assert rotated.seal("X", digest).key_id == "two"
    assert rotated.lookup_hash("SPR-ABC123") == digest


def test_a_ciphertext_moved_to_another_code_does_not_open():
    v = vault(KEY1)
    sealed = v.seal("CODE-1", v.lookup_hash("CODE-1"))
    with pytest.raises(InvalidTag):
        v.open(sealed.key_id, sealed.secret, v.lookup_hash("CODE-2"))


def test_bad_key_configuration_is_refused():
    for text in ["", "nokey", "x:not-base64!", "x:" + "QUJD"]:
        with pytest.raises(KeyConfigError):
            parse_keys(text)
    with pytest.raises(KeyConfigError):
        vault(KEY1, active="missing")
    assert "SPR" not in repr(vault(KEY1))

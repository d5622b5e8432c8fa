"""Webhook rules: what may be subscribed to, the signature a receiver checks, the retry schedule, when a
failing webhook is switched off and which addresses are never called outside development."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.delivery.webhooks.domain import (
    AddressRefused,
    RetrySchedule,
    UnknownEvents,
    check_events,
    check_url,
    refused_address,
    should_disable,
    signature,
    signature_header,
    verify,
)

BODY = b'{"event_id":"6f1c8c1e-4e55-4a53-9d38-2b1b9c1f0a11","event_type":"order.state_changed"}'


def test_the_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"whsec_test", b"1764921600." + BODY, hashlib.sha256).hexdigest()

    assert signature("whsec_test", 1764921600, BODY) == expected
    assert signature_header(["whsec_test"], 1764921600, BODY) == f"t=1764921600,v1={expected}"


def test_during_a_rotation_the_header_carries_one_v1_per_secret_and_either_verifies():
    header = signature_header(["whsec_new", "whsec_old"], 1764921600, BODY)

    assert header.count(",v1=") == 2
    assert verify(header, BODY, "whsec_new", now=1764921600)
    assert verify(header, BODY, "whsec_old", now=1764921600)
    assert not verify(header, BODY, "whsec_other", now=1764921600)


def test_a_changed_body_or_a_stale_timestamp_does_not_verify():
    header = signature_header(["whsec_test"], 1764921600, BODY)

    assert not verify(header, BODY + b" ", "whsec_test", now=1764921600)
    assert not verify(header, BODY, "whsec_test", now=1764921600 + 301)
    assert not verify("v1=abc", BODY, "whsec_test", now=1764921600)


def test_only_status_topics_can_be_subscribed_to_each_once():
    assert check_events(["order.state_changed", "delivery.failed", "order.state_changed"]) == [
        "order.state_changed",
        "delivery.failed",
    ]
    with pytest.raises(UnknownEvents, match=r"voucher\.issued"):
        check_events(["voucher.issued"])  # carries a (sealed) code
    with pytest.raises(UnknownEvents, match=r"delivery\.requested"):
        check_events(["order.state_changed", "delivery.requested"])  # carries contact details


def test_retries_back_off_exponentially_with_jitter_up_to_the_maximum():
    schedule = RetrySchedule(base_s=10, max_s=3600)
    rng = random.Random(7)

    delays = [schedule.delay(n, rng) for n in range(1, 12)]

    assert 5 <= delays[0] <= 10
    assert 40 <= delays[3] <= 80
    assert all(1800 <= d <= 3600 for d in delays[-2:])
    assert len({round(schedule.delay(3, rng), 6) for _ in range(20)}) > 1


def test_a_webhook_is_disabled_once_it_has_failed_for_the_whole_period():
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    day = timedelta(days=1)

    assert should_disable(now - day, now, day)
    assert not should_disable(now - day + timedelta(seconds=1), now, day)
    assert not should_disable(None, now, day)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.8.8",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "169.254.169.254",
        "fe80::1",
        "fd00::1",
        "0.0.0.0",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "224.0.0.1",
    ],
)
def test_loopback_private_link_local_and_other_internal_addresses_are_refused(address):
    assert refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert refused_address(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/orchard",
        "https://127.0.0.1/hook",
        "https://[::1]:8443/hook",
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https://user:pw@hooks.example.com/hook",
        "ftp://hooks.example.com/hook",
        "https:///nohost",
    ],
)
def test_outside_development_webhook_urls_must_be_https_to_a_public_host(url):
    with pytest.raises(AddressRefused):
        check_url(url, dev=False)


def test_in_development_a_local_receiver_is_allowed():
    assert check_url("http://127.0.0.1:8199/hook", dev=True) == ("127.0.0.1", 8199)
    assert check_url("https://hooks.example.com/orchard", dev=False) == ("hooks.example.com", 443)


def test_the_readme_receiver_example_verifies_what_the_service_signs():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("*Verifying a webhook.*") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    readme_verify: Callable[[str, str, bytes], bool] = namespace["verify"]
    now = int(time.time())
    header = signature_header(["whsec_new", "whsec_old"], now, BODY)

    assert readme_verify("whsec_new", header, BODY)
    assert readme_verify("whsec_old", header, BODY)
    assert not readme_verify("whsec_other", header, BODY)
    assert not readme_verify("whsec_new", signature_header(["whsec_new"], now - 3600, BODY), BODY)
    assert f"t=1764921600,v1={signature('whsec_test', 1764921600, BODY)}" in readme

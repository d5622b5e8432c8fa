"""The browser suite: the whole system (its own broker, database, six services, Keycloak and the
console) on free ports, driven by Playwright through Debian's Chromium; screenshots go to
var/screenshots/."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from deploy.demo import VOUCHER_CAMPAIGN, seed, service_urls
from deploy.identity.keycloak import DEMO_PASSWORD
from deploy.infra.paths import REPO_ROOT
from deploy.runner import StackConfig
from deploy.testing import isolated_stack

playwright_api = pytest.importorskip("playwright.sync_api")

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
EMPTY_CAMPAIGN = "console-no-codes"
BULK_CAMPAIGN = "console-bulk-cancel"
"""A campaign without codes whose two orders stay pending, for the bulk cancel test."""


@dataclass(frozen=True)
class ConsoleStack:
    config: StackConfig
    urls: dict[str, str]
    console_url: str
    pending_order_id: str
    """An order that stays pending (its campaign has no codes), for the cancel test."""
    bouncing_order_id: str
    """An order whose e-mail address the SMTP sink refuses for good: its delivery fails."""
    resend_order_id: str
    """Another order whose delivery fails, for the bulk resend test."""

    @property
    def mail_dir(self) -> Path:
        return self.config.var_dir / "mail"

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(role='admin', sub='browser-suite')}"}

    def read(self, service: str, path: str, **params: Any) -> Any:
        """What `GET path` of `service` answers an admin, as JSON: the truth behind a screen."""
        answer = httpx.get(f"{self.urls[service]}{path}", params=params, headers=self.admin(), timeout=30)
        answer.raise_for_status()
        return answer.json()


def create_campaign(urls: dict[str, str], headers: dict[str, str], campaign_id: str = EMPTY_CAMPAIGN) -> None:
    """An active voucher campaign of 10.00 EUR codes, created without any code."""
    with httpx.Client(headers=headers, timeout=30) as client:
        client.post(
            f"{urls['voucher']}/v1/campaigns",
            json={
                "campaign_id": campaign_id,
                "name": f"Console test campaign {campaign_id}",
                "brand": "Orchard",
                "face_value": "10.00",
                "currency": "EUR",
                "per_record_limit": "100.00",
                "budget": "1000.00",
                "default_channel": "email",
            },
        ).raise_for_status()


def place_order(
    urls: dict[str, str], headers: dict[str, str], campaign: str, member: str, email: str, amount: str
) -> str:
    """A voucher order placed directly (source `api`), like an operator would."""
    body = {
        "external_ref": f"console-{uuid.uuid4().hex[:10]}",
        "member_id": member,
        "campaign_id": campaign,
        "amount": amount,
        "currency": "EUR",
        "name": "Console Test",
        "email": email,
        "channel": "email",
    }
    with httpx.Client(headers=headers, timeout=30) as client:
        # The order service learns the campaign from `campaign.changed`: until then it answers 422.
        for _ in range(120):
            answer = client.post(f"{urls['order']}/v1/orders", json=body)
            if answer.status_code in (200, 201, 202):
                return str(answer.json()["order_id"])
            time.sleep(0.5)
        raise AssertionError(f"the order service never took the order: {answer.status_code} {answer.text}")


@pytest.fixture(scope="module")
def console_stack() -> Iterator[ConsoleStack]:
    if shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: bash deploy/install-system-deps.sh installs it")
    with isolated_stack("orchard-console-", console=True) as config:
        urls = service_urls(config.service_ports)
        headers = {"Authorization": f"Bearer {issue_token(role='admin', sub='browser-suite')}"}
        asyncio.run(seed(urls, headers["Authorization"].removeprefix("Bearer ")))
        create_campaign(urls, headers)
        waiting = place_order(
            urls, headers, EMPTY_CAMPAIGN, "demo-member-02", "member02@example.com", "10.00"
        )
        create_campaign(urls, headers, BULK_CAMPAIGN)
        for n in (6, 7):
            place_order(urls, headers, BULK_CAMPAIGN, f"demo-member-0{n}", f"member0{n}@example.com", "10.00")
        bouncing = place_order(
            urls, headers, VOUCHER_CAMPAIGN, "demo-member-03", "bounce-03@example.com", "25.00"
        )
        resend = place_order(
            urls, headers, VOUCHER_CAMPAIGN, "demo-member-04", "bounce-04@example.com", "25.00"
        )
        # A partner's redemption of a code nobody issued is refused, and recorded as failed.
        partner = {"Authorization": f"Bearer {issue_token(role='partner', sub='demo-partner')}"}
        refused = httpx.post(
            f"{urls['voucher']}/v1/redemptions",
            headers=partner,
            json={"code": "NO-SUCH-CODE-1", "channel": "online", "idempotency_key": uuid.uuid4().hex},
        )
        assert refused.status_code == 404, refused.text
        now = datetime.now(UTC)
        offer = {
            "title": "Free dessert",
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "validation_method": "pin",
        }
        httpx.post(f"{urls['redemption']}/v1/offers", headers=partner, json=offer).raise_for_status()
        assert config.console_url is not None
        yield ConsoleStack(config, urls, config.console_url, waiting, bouncing, resend)


@pytest.fixture(scope="module")
def browser(console_stack: ConsoleStack) -> Iterator[Any]:
    # After the stack: Playwright's sync API keeps an event loop running in this thread, and the
    # runner's asyncio.run() calls cannot start under it.
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield launched
        launched.close()


SignIn = Callable[..., Any]


@pytest.fixture
def sign_in(browser: Any, console_stack: ConsoleStack) -> Iterator[SignIn]:
    """`sign_in("ops")` opens a new browser context, signs in through Keycloak and returns its page."""
    contexts: list[Any] = []

    def open_as(username: str, *, width: int = 1280) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto(console_stack.console_url + "/")
        page.get_by_role("link", name="Sign in").click()
        page.locator("#username").fill(username)
        page.locator("#password").fill(DEMO_PASSWORD)
        page.locator("#kc-login").click()
        page.wait_for_url(console_stack.console_url + "/**")
        return page

    yield open_as
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

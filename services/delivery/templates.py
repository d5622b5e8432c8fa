"""Messages rendered from Jinja2 templates per campaign, channel and locale.

For template `voucher`, campaign `C` and locale `pt-BR` the first file found wins:
`voucher/campaigns/C/pt-BR/<file>`, `voucher/campaigns/C/pt/<file>`, `voucher/campaigns/C/<file>`,
`voucher/pt-BR/<file>`, `voucher/pt/<file>`, `voucher/<file>`; files are `email.subject.txt`,
`email.txt`, `email.html`, `sms.txt`, `whatsapp.txt`. An operator's directory
(ORCHARD_DELIVERY_TEMPLATES_DIR) is searched before the built-in defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    select_autoescape,
)
from pydantic import SecretStr

from contracts.values import Channel

BUILT_IN = Path(__file__).resolve().parent / "templates"
DEFAULT_TEMPLATE = "voucher"


@dataclass(frozen=True)
class VoucherView:
    """What a template may show: no contact details beyond the name."""

    booking_id: str
    campaign_id: str
    name: str | None
    locale: str
    code: SecretStr
    masked_code: str | None
    face_value: Decimal | None
    currency: str | None
    expires_at: datetime | None
    test: bool = False
    """A UAT test order: every message says so (`TEST_MARK`), whatever its template."""


TEST_MARK = "[TEST]"
TEST_NOTICE = "This is a UAT test message: the code is a test code, redeemable in test mode only."


@dataclass(frozen=True)
class Rendered:
    text: str
    subject: str | None = None
    html: str | None = None

    def __repr__(self) -> str:  # the text carries the clear code
        return "Rendered(<redacted>)"


def _value(face_value: Decimal | None, currency: str | None) -> str:
    if face_value is None:
        return "reward"
    amount = f"{face_value:.2f}" if face_value == face_value.quantize(Decimal("0.01")) else str(face_value)
    return f"{amount} {currency}" if currency else amount


class TemplateBook:
    RESOLVE_TTL_S = 30.0
    """How long the file chosen for (template, campaign, locale, file) is reused before it is looked
    up again (so a template added to the operators' directory is picked up within this time)."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._chosen: dict[tuple[str, ...], tuple[float, Template]] = {}
        loaders = [FileSystemLoader(str(path)) for path in (extra_dir, BUILT_IN) if path is not None]
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )

    def _select(self, names: list[str]) -> Template:
        """The first template of `names` that exists. Looking up the missing ones (a file system miss
        and an exception each) costs more than rendering, so the choice is kept for a while."""
        key = tuple(names)
        now = time.monotonic()
        kept = self._chosen.get(key)
        if kept is not None and now - kept[0] < self.RESOLVE_TTL_S:
            return kept[1]
        chosen = self._env.select_template(names)
        if len(self._chosen) > 10_000:
            self._chosen.clear()
        self._chosen[key] = (now, chosen)
        return chosen

    @staticmethod
    def candidates(template: str, campaign_id: str, locale: str, file: str) -> list[str]:
        language = locale.split("-", 1)[0]
        locales = list(dict.fromkeys([locale, language]))
        names = [f"{template}/campaigns/{campaign_id}/{loc}/{file}" for loc in locales]
        names.append(f"{template}/campaigns/{campaign_id}/{file}")
        names += [f"{template}/{loc}/{file}" for loc in locales]
        names.append(f"{template}/{file}")
        if template != DEFAULT_TEMPLATE:
            names += TemplateBook.candidates(DEFAULT_TEMPLATE, campaign_id, locale, file)
        return names

    def _render(self, view: VoucherView, template: str, file: str) -> str:
        chosen = self._select(self.candidates(template, view.campaign_id, view.locale, file))
        return chosen.render(
            booking_id=view.booking_id,
            campaign_id=view.campaign_id,
            name=view.name,
            locale=view.locale,
            code=view.code.get_secret_value(),
            masked_code=view.masked_code,
            value=_value(view.face_value, view.currency),
            face_value=view.face_value,
            currency=view.currency,
            expires_at=view.expires_at.date().isoformat() if view.expires_at else None,
        ).strip()

    def render_message(
        self, template: str, channel: Channel, locale: str, params: dict[str, str], name: str | None
    ) -> Rendered:
        """A message that is not a voucher: its own template only (no voucher defaults), `params` as given."""
        language = locale.split("-", 1)[0]
        locales = list(dict.fromkeys([locale, language]))

        def one(file: str) -> str:
            names = [f"{template}/{loc}/{file}" for loc in locales] + [f"{template}/{file}"]
            chosen = self._select(names)
            return chosen.render(params=params, name=name, locale=locale).strip()

        if channel is Channel.EMAIL:
            return Rendered(
                subject=one("email.subject.txt"), text=one("email.txt") + "\n", html=one("email.html") + "\n"
            )
        return Rendered(text=one(f"{channel.value}.txt"))

    def render(self, view: VoucherView, channel: Channel, template: str | None = None) -> Rendered:
        name = template or DEFAULT_TEMPLATE
        if channel is Channel.EMAIL:
            rendered = Rendered(
                subject=self._render(view, name, "email.subject.txt"),
                text=self._render(view, name, "email.txt") + "\n",
                html=self._render(view, name, "email.html") + "\n",
            )
        else:
            rendered = Rendered(text=self._render(view, name, f"{channel.value}.txt"))
        return _marked_as_test(rendered) if view.test else rendered


def _marked_as_test(rendered: Rendered) -> Rendered:
    """A test order's message, visibly a test: the subject and the text start with the mark, and an
    e-mail's bodies say what it is (an SMS stays short)."""
    if rendered.subject is None:
        return Rendered(text=f"{TEST_MARK} {rendered.text}")
    html = f"<p><strong>{TEST_MARK}</strong> {TEST_NOTICE}</p>\n{rendered.html}" if rendered.html else None
    return Rendered(
        subject=f"{TEST_MARK} {rendered.subject}",
        text=f"{TEST_MARK} {TEST_NOTICE}\n\n{rendered.text}",
        html=html,
    )

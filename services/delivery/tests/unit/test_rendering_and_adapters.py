from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from pydantic import SecretStr

from contracts.values import Channel
from services.delivery.channels import Outgoing
from services.delivery.channels.email import build_email
from services.delivery.channels.twilio import _reason_for
from services.delivery.codes import CodeVault
from services.delivery.domain import ReasonCode
from services.delivery.notifications import slack_payload, summarise, teams_payload
from services.delivery.settings import DeliverySettings
from services.delivery.templates import Rendered, TemplateBook, VoucherView

VIEW = VoucherView(
    booking_id="BK-7F3K9Q2M4T",
    campaign_id="camp-1",
    name="Ann <script>",
    locale="en-GB",
    code=SecretStr("ORCH-1234"),
    masked_code="****1234",
    face_value=Decimal("25"),
    currency="EUR",
    expires_at=datetime(2027, 1, 31, tzinfo=UTC),
)


def test_email_has_subject_text_and_escaped_html_with_code_value_expiry_and_booking():
    rendered = TemplateBook().render(VIEW, Channel.EMAIL)

    assert rendered.subject == "Your 25.00 EUR reward is here (booking BK-7F3K9Q2M4T)"
    for part in (rendered.text, rendered.html):
        assert "ORCH-1234" in part
        assert "BK-7F3K9Q2M4T" in part
        assert "2027-01-31" in part
    assert "&lt;script&gt;" in rendered.html
    assert "ORCH-1234" not in repr(rendered)


def test_a_campaign_locale_template_wins_over_the_defaults(tmp_path):
    folder = tmp_path / "voucher" / "campaigns" / "camp-1" / "en"
    folder.mkdir(parents=True)
    (folder / "sms.txt").write_text("Camp one says {{ code }}")

    assert TemplateBook(tmp_path).render(VIEW, Channel.SMS).text == "Camp one says ORCH-1234"
    other = VoucherView(**{**VIEW.__dict__, "campaign_id": "camp-2"})
    assert (
        TemplateBook(tmp_path).render(other, Channel.SMS).text.startswith("Your 25.00 EUR voucher: ORCH-1234")
    )


def _parsed(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, _class=EmailMessage, policy=policy.default)


def _text(part: Any) -> str:
    """A text part as written (SMTP's CRLF line ends back to newlines)."""
    return str(part.get_content()).replace("\r\n", "\n")


def test_an_email_carries_the_stable_message_id_and_both_parts():
    rendered = TemplateBook().render(VIEW, Channel.EMAIL)
    raw = build_email(
        Outgoing(Channel.EMAIL, "ann@example.com", "Ann", rendered, "<d.1.email@orchard.local>"),
        "Orchard Rewards <r@orchard.local>",
    )
    email = _parsed(raw)

    assert not email.defects
    assert email["Message-ID"] == "<d.1.email@orchard.local>"
    assert email["From"].addresses[0].addr_spec == "r@orchard.local"
    assert email["To"].addresses[0].addr_spec == "ann@example.com"
    assert email["Subject"] == rendered.subject
    assert _text(email.get_body(("plain",))) == rendered.text
    assert _text(email.get_body(("html",))) == rendered.html
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_an_email_keeps_accents_and_lines_starting_with_a_dot_and_refuses_header_injection():
    rendered = Rendered(text="Votre code : ORCH-1234\n.\nà bientôt ", subject="Votre récompense est là")
    raw = build_email(
        Outgoing(Channel.EMAIL, "zoe@example.com", "Zoë\r\nBcc: evil@example.com", rendered, "<d.2.email@x>"),
        "Récompenses <r@orchard.local>",
    )
    email = _parsed(raw)

    assert raw.isascii()
    assert email["Subject"] == "Votre récompense est là"
    assert email["To"].addresses[0].display_name == "Zoë Bcc: evil@example.com"
    assert [a.addr_spec for a in email["To"].addresses] == ["zoe@example.com"]
    assert email["Bcc"] is None
    assert email["From"].addresses[0].display_name == "Récompenses"
    assert email.get_content_type() == "text/plain"
    assert _text(email) == "Votre code : ORCH-1234\n.\nà bientôt \n"


def test_twilio_answers_map_to_reason_codes():
    assert _reason_for(429, 20429) is ReasonCode.RATE_LIMITED
    assert _reason_for(503, None) is ReasonCode.PROVIDER_ERROR
    assert _reason_for(400, 21211) is ReasonCode.INVALID_NUMBER
    assert _reason_for(400, 63003) is ReasonCode.WHATSAPP_UNREACHABLE
    assert _reason_for(401, 20003) is ReasonCode.PROVIDER_AUTH_FAILED
    assert _reason_for(400, 12345) is ReasonCode.PROVIDER_REJECTED


def test_held_codes_round_trip_through_the_vault_and_are_not_readable_sealed():
    vault = CodeVault(DeliverySettings().code_key)
    sealed = vault.seal(SecretStr("ORCH-1234"))
    assert b"ORCH-1234" not in sealed
    assert vault.open(sealed).get_secret_value() == "ORCH-1234"


def _row(kind: str, n: int, campaign: str = "c1") -> dict:
    return {
        "kind": kind,
        "campaign_id": campaign,
        "line": f"line {n}",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
    }


def test_a_burst_is_summarised_and_a_trickle_is_listed():
    rows = [_row("delivery_failed", n) for n in range(312)] + [_row("stock_low", 1)]

    sections = summarise(rows, burst_threshold=5)

    assert sections == [
        ("Final delivery failures", ["312 deliveries failed in the last 6 minutes", "Campaigns: c1"]),
        ("Low voucher stock", ["line 1"]),
    ]
    slack = slack_payload(sections)
    assert slack["blocks"][1]["text"]["type"] == "mrkdwn"
    assert teams_payload(sections)["attachments"][0]["content"]["type"] == "AdaptiveCard"


def test_a_burst_within_a_minute_says_so():
    rows = [_row("delivery_failed", n) for n in range(10)]
    assert summarise(rows, 3)[0][1][0] == "10 deliveries failed in the last minute"


def test_a_test_orders_messages_are_marked_as_a_test_on_every_channel():
    test_view = VoucherView(**{**VIEW.__dict__, "test": True})
    book = TemplateBook()

    email = book.render(test_view, Channel.EMAIL)
    sms = book.render(test_view, Channel.SMS)
    real = book.render(VIEW, Channel.EMAIL)

    assert email.subject is not None
    assert email.subject.startswith("[TEST] ")
    assert email.text.startswith("[TEST] ")
    assert "ORCH-1234" in email.text
    assert email.html is not None
    assert "<strong>[TEST]</strong>" in email.html
    assert sms.text.startswith("[TEST] ")
    assert "ORCH-1234" in sms.text
    assert real.subject is not None
    assert "[TEST]" not in real.subject + real.text

"""IPA record validation: one set of rules for the topic, CSV uploads and JSON records. Pure, no I/O.

A record arrives as cells (field name → raw value). `validate_record` reports every problem it finds,
each by field with a machine-readable code, and returns the normalised record only when there is none.
Whether the reference was seen before needs the database: the caller adds `duplicate_*` errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from chassis.money import minor_units
from chassis.spreadsheet import FORMULA_STARTS
from contracts.values import POINTS_CURRENCY, Channel, RewardType
from contracts.vouchers import CampaignStatus

RECORD_FIELDS = (
    "external_ref",
    "batch_id",
    "member_id",
    "name",
    "email",
    "phone",
    "channel",
    "campaign_id",
    "reward_type",
    "amount",
    "currency",
    "reason",
    "test",
)
"""The fields of an IPA record; all are text but `test`, a flag (JSON true/false; in CSV true/false, yes/no,
1/0 or empty)."""
TEXT_FIELDS = tuple(name for name in RECORD_FIELDS if name != "test")
REQUIRED_FIELDS = ("external_ref", "member_id", "campaign_id", "reward_type", "amount")
MAX_LENGTH = {"reason": 2000, "email": 254}
DEFAULT_MAX_LENGTH = 200

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_LIKE = re.compile(r"^\+[0-9][0-9 ().-]*$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_SIGNED_NUMBER = re.compile(r"^[+-][0-9]+(\.[0-9]+)?$")
_CONTROL = re.compile(r"[\x00-\x1f]")

_Choice = TypeVar("_Choice", bound=StrEnum)


@dataclass(frozen=True)
class CampaignView:
    """What intake needs to know about a campaign, from `campaign.changed`."""

    campaign_id: str
    reward_type: RewardType
    status: CampaignStatus
    currency: str | None
    per_record_limit: Decimal | None
    default_channel: Channel
    face_value: Decimal | None = None
    denominations: tuple[Decimal, ...] = ()

    def serves(self, amount: Decimal) -> bool:
        """Whether a code of the campaign can be issued for this amount: voucher issuance takes only a
        code of exactly the order's value, so the amount is the face value or another value its codes
        hold. A snapshot without a face value (points, or from before it was kept) does not judge."""
        return self.face_value is None or amount == self.face_value or amount in self.denominations


@dataclass(frozen=True)
class RecordError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class ValidRecord:
    external_ref: str
    member_id: str
    campaign_id: str
    reward_type: RewardType
    amount: Decimal
    currency: str | None
    channel: Channel
    batch_ref: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    reason: str | None = None
    test: bool = False


@dataclass
class Outcome:
    record: ValidRecord | None = None
    errors: list[RecordError] = field(default_factory=list)


def looks_like_formula(value: str, field_name: str) -> bool:
    """A cell a spreadsheet would run as a formula. Phone numbers (`+44…`) and plain signed numbers
    are data, not formulas; the amount rules judge a negative amount."""
    if not value.startswith(FORMULA_STARTS):
        return False
    if field_name == "phone" and _PHONE_LIKE.fullmatch(value):
        return False
    return not _SIGNED_NUMBER.fullmatch(value)


def _text(cells: Mapping[str, Any], name: str, errors: list[RecordError]) -> str | None:
    value = cells.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        if name == "amount" and isinstance(value, float):
            errors.append(RecordError(name, "invalid_amount", "Amounts are decimal strings such as '25.00'."))
        else:
            errors.append(RecordError(name, "invalid_type", "Expected text."))
        return None
    text = str(value).strip()
    if not text:
        return None
    if looks_like_formula(text, name):
        errors.append(
            RecordError(name, "formula_like", "Starts like a spreadsheet formula (=, +, -, @); not accepted.")
        )
        return None
    limit = MAX_LENGTH.get(name, DEFAULT_MAX_LENGTH)
    if len(text) > limit:
        errors.append(RecordError(name, "too_long", f"At most {limit} characters."))
        return None
    if _CONTROL.search(text):
        errors.append(RecordError(name, "control_characters", "Contains control characters."))
        return None
    return text


def validate_record(cells: Mapping[str, Any], campaigns: Mapping[str, CampaignView]) -> Outcome:
    """Every problem of one record, or the normalised record when there is none."""
    errors: list[RecordError] = []
    values = {name: _text(cells, name, errors) for name in TEXT_FIELDS}
    test = _flag(cells.get("test"), errors)
    bad_fields = {e.field for e in errors}  # the cells unreadable as such: no further error is said of them
    for name in REQUIRED_FIELDS:
        if values[name] is None and name not in bad_fields:
            errors.append(RecordError(name, "required", f"{name} is required."))
    _check_identifiers(values, errors)
    email, phone = _contact(values, errors)
    channel = _choice(values, "channel", Channel, "One of: email, sms, whatsapp.", errors)
    reward_type = _choice(values, "reward_type", RewardType, "One of: voucher, points.", errors)
    campaign = _campaign(values["campaign_id"], campaigns, errors)
    reward_type = _reward_type(reward_type, campaign, test, errors)
    currency = _currency(values["currency"], reward_type, campaign, bad_fields, errors)
    amount = _amount(values["amount"], reward_type, currency, campaign, errors)
    channel = _reachable_channel(values, channel, campaign, bad_fields, errors)
    if errors or reward_type is None or amount is None or channel is None:
        return Outcome(errors=errors)
    assert values["external_ref"] is not None
    assert values["member_id"] is not None
    assert values["campaign_id"] is not None
    return Outcome(
        record=ValidRecord(
            external_ref=values["external_ref"],
            member_id=values["member_id"],
            campaign_id=values["campaign_id"],
            reward_type=reward_type,
            amount=amount,
            currency=currency,
            channel=channel,
            batch_ref=values["batch_id"],
            name=values["name"],
            email=email,
            phone=phone,
            reason=values["reason"],
            test=test,
        )
    )


def _check_identifiers(values: Mapping[str, str | None], errors: list[RecordError]) -> None:
    for name in ("external_ref", "member_id"):
        value = values[name]
        if value is not None and not _IDENTIFIER.fullmatch(value):
            errors.append(
                RecordError(
                    name,
                    f"invalid_{name}",
                    "Letters, digits and . _ : @ / - only, starting with a letter or digit.",
                )
            )


def _contact(values: Mapping[str, str | None], errors: list[RecordError]) -> tuple[str | None, str | None]:
    """The email address and phone number, each None when absent or not valid."""
    email, phone = values["email"], values["phone"]
    if email is not None and not _EMAIL.fullmatch(email):
        errors.append(RecordError("email", "invalid_email", "Not a valid email address."))
        email = None
    if phone is not None and not _E164.fullmatch(phone):
        errors.append(
            RecordError("phone", "invalid_phone", "Not an E.164 phone number (+ then 7 to 15 digits).")
        )
        phone = None
    return email, phone


def _choice(
    values: Mapping[str, str | None],
    name: str,
    choices: type[_Choice],
    message: str,
    errors: list[RecordError],
) -> _Choice | None:
    """The field's value among `choices` (any case), None when absent or not one of them."""
    value = values[name]
    if value is None:
        return None
    try:
        return choices(value.lower())
    except ValueError:
        errors.append(RecordError(name, f"invalid_{name}", message))
        return None


def _campaign(
    campaign_id: str | None, campaigns: Mapping[str, CampaignView], errors: list[RecordError]
) -> CampaignView | None:
    """The record's campaign, known and active; an inactive one is returned (with its error) to judge the
    rest of the record by."""
    if campaign_id is None:
        return None
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        errors.append(RecordError("campaign_id", "unknown_campaign", "No such campaign."))
    elif campaign.status is not CampaignStatus.ACTIVE:
        errors.append(
            RecordError("campaign_id", "campaign_inactive", f"The campaign is {campaign.status}, not active.")
        )
    return campaign


def _reward_type(
    reward_type: RewardType | None, campaign: CampaignView | None, test: bool, errors: list[RecordError]
) -> RewardType | None:
    """The reward the record is for: as given when the campaign agrees, else the campaign's."""
    if campaign is not None and reward_type is not None and reward_type is not campaign.reward_type:
        errors.append(
            RecordError(
                "reward_type",
                "reward_type_mismatch",
                f"The campaign rewards {campaign.reward_type}, not {reward_type}.",
            )
        )
        reward_type = None
    effective = reward_type or (campaign.reward_type if campaign else None)
    if test and effective is RewardType.POINTS:
        errors.append(
            RecordError("test", "test_not_voucher", "Test orders are vouchers; points have no test mode.")
        )
    return effective


def _currency(
    text: str | None,
    reward_type: RewardType | None,
    campaign: CampaignView | None,
    bad_fields: set[str],
    errors: list[RecordError],
) -> str | None:
    """A voucher's currency (the campaign's, when it has one); a points reward has none."""
    currency = text.upper() if text else None
    if reward_type is RewardType.POINTS:
        if currency not in (None, POINTS_CURRENCY):
            errors.append(
                RecordError("currency", "currency_mismatch", "A points reward has no currency (or PTS).")
            )
        return None
    if reward_type is not RewardType.VOUCHER:
        return currency
    if currency is None:
        if "currency" not in bad_fields:
            errors.append(RecordError("currency", "required", "currency is required for a voucher reward."))
        return None
    if not _CURRENCY.fullmatch(currency) or currency == POINTS_CURRENCY:
        errors.append(RecordError("currency", "invalid_currency", "An ISO 4217 code such as EUR."))
        return None
    if campaign is not None and campaign.currency is not None and currency != campaign.currency:
        errors.append(
            RecordError("currency", "currency_mismatch", f"The campaign's currency is {campaign.currency}.")
        )
        return None
    return currency


def _reachable_channel(
    values: Mapping[str, str | None],
    channel: Channel | None,
    campaign: CampaignView | None,
    bad_fields: set[str],
    errors: list[RecordError],
) -> Channel | None:
    """The channel the reward goes out on (as given, else the campaign's default), which must have the
    address it needs."""
    effective = channel or (campaign.default_channel if campaign else None)
    if effective is not None and "channel" not in {e.field for e in errors}:
        needs = "email" if effective is Channel.EMAIL else "phone"
        if values[needs] is None and needs not in bad_fields:
            what = "an email address" if needs == "email" else "a phone number"
            errors.append(
                RecordError("channel", "channel_unreachable", f"The {effective} channel needs {what}.")
            )
    return effective


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0", "")


def _flag(value: Any, errors: list[RecordError]) -> bool:
    """The `test` flag: a JSON boolean, or its spelling in a CSV cell; absent is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    errors.append(RecordError("test", "invalid_flag", "true or false (also yes/no, 1/0)."))
    return False


def _amount(
    text: str | None,
    reward_type: RewardType | None,
    currency: str | None,
    campaign: CampaignView | None,
    errors: list[RecordError],
) -> Decimal | None:
    if text is None:
        return None
    if text.startswith("-") and _DECIMAL.fullmatch(text[1:]):
        errors.append(RecordError("amount", "amount_not_positive", "The amount must be above zero."))
        return None
    if not _DECIMAL.fullmatch(text):
        errors.append(RecordError("amount", "invalid_amount", "Not a plain decimal such as 25.00."))
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        errors.append(RecordError("amount", "invalid_amount", "Not a plain decimal such as 25.00."))
        return None
    if amount <= 0:
        errors.append(RecordError("amount", "amount_not_positive", "The amount must be above zero."))
        return None
    places = -int(amount.as_tuple().exponent)
    if reward_type is RewardType.POINTS and amount != amount.to_integral_value():
        errors.append(RecordError("amount", "amount_precision", "Points are whole numbers."))
        return None
    if reward_type is RewardType.VOUCHER and currency is not None and places > minor_units(currency):
        digits = minor_units(currency)
        errors.append(
            RecordError(
                "amount", "amount_precision", f"{currency} amounts have at most {digits} decimal places."
            )
        )
        return None
    if campaign is not None and campaign.per_record_limit is not None and amount > campaign.per_record_limit:
        errors.append(
            RecordError(
                "amount",
                "amount_over_limit",
                f"Above the campaign's per-record limit of {campaign.per_record_limit}.",
            )
        )
        return None
    if reward_type is RewardType.POINTS:
        return amount.to_integral_value()
    if campaign is not None and not campaign.serves(amount):
        assert campaign.face_value is not None
        worth = sorted({campaign.face_value, *campaign.denominations})
        values = ", ".join(format(v.normalize(), "f") for v in worth)
        errors.append(
            RecordError(
                "amount",
                "amount_not_a_denomination",
                f"No code of the campaign is worth {amount}; its codes are worth {values}.",
            )
        )
        return None
    return amount


def duplicate_in_file(first_row: int) -> RecordError:
    return RecordError(
        "external_ref",
        "duplicate_in_file",
        f"The same external_ref is already on row {first_row} of this batch.",
    )


def duplicate_of(original: Mapping[str, Any]) -> RecordError:
    """The reference was accepted before: say where, so the sender can find the original."""
    where = [f"accepted {original['accepted_at']:%Y-%m-%d %H:%M:%S} UTC"]
    if original.get("order_id"):
        where.append(f"as order {original['order_id']}")
    if original.get("batch_id"):
        where.append(f"in batch {original['batch_id']} row {original['row_number']}")
    elif original.get("source") == "topic":
        where.append("from ipa.record_submitted")
    return RecordError("external_ref", "duplicate", "Duplicate of an allocation " + " ".join(where) + ".")

"""Every topic in one declarative list: its payload, key, producer, consumers and Kafka settings.

Topic creation (deploy), subscriptions (services), the JSON Schemas and the AsyncAPI document are
all derived from `TOPICS`, so adding a topic here is the one step that makes it exist everywhere.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from contracts.approvals import ApprovalDecided, ApprovalRequested
from contracts.campaigns import CampaignActivity
from contracts.delivery import DeliveryFailed, DeliveryMessageRequested, DeliveryRequested, DeliverySucceeded
from contracts.envelope import EventData
from contracts.ipa import IpaRecordAccepted, IpaRecordRejected, IpaRecordSubmitted
from contracts.members import MemberUpserted
from contracts.orders import OrderCancelRequested, OrderCreateRequested, OrderStateChanged
from contracts.redemption import RedemptionRecorded
from contracts.support import SupportResendRequested, SupportSlaBreached
from contracts.topics import DLQ_SUFFIX, Topics
from contracts.vouchers import (
    CampaignChanged,
    VoucherIssued,
    VoucherIssueFailed,
    VoucherRedeemed,
    VoucherRedemptionRefused,
    VoucherStatusChanged,
    VoucherStockLow,
)
from contracts.wallet import (
    WalletCreditRequested,
    WalletDebitRejected,
    WalletDebitRequested,
    WalletTransactionRecorded,
)

SERVICES: tuple[str, ...] = ("order", "voucher", "delivery", "wallet", "redemption", "support")
HRIS = "hris"
"""The external upstream: HR systems and other allocation sources publishing into Orchard."""

HIGH_VOLUME_PARTITIONS = 6
LOW_VOLUME_PARTITIONS = 3
DLQ_PARTITIONS = 1
"""Dead letters are rare and read by people: one partition keeps them in the order they failed."""

_DAY_MS = 24 * 60 * 60 * 1000
DEFAULT_RETENTION_MS = 7 * _DAY_MS
DLQ_RETENTION_MS = 30 * _DAY_MS
RETAIN_FOREVER = -1


@dataclass(frozen=True)
class TopicSpec:
    """One row of the registry: what travels on a topic, keyed how, from whom to whom, kept how long."""

    name: str
    payload: type[EventData]
    _: KW_ONLY
    key: str
    """The `data` field whose value is the message key (the aggregate id)."""
    producer: str
    consumers: tuple[str, ...]
    description: str
    high_volume: bool = False
    """Traffic grows with allocations or redemptions: more partitions."""
    key_fallback: str | None = None
    """The `data` field keying the message when `key` is absent (`order.cancel_requested` by external_ref)."""
    other_producers: tuple[str, ...] = ()
    compacted: bool = False
    """Kafka keeps the latest message per key forever: the topic is a snapshot, not a history."""
    sensitive: bool = False
    """Its payloads carry secrets or personal data (a sealed code, contact details, a one-time code):
    the producer's outbox row keeps no payload once the event is published."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", str(self.name))  # a `Topics` member is kept as its plain name
        fields = self.payload.model_fields
        for name in (self.key, self.key_fallback):
            if name is not None and name not in fields:
                raise ValueError(f"{self.name}: key field {name!r} is not in {self.payload.__name__}")
        for party in (*self.producers, *self.consumers):
            if party not in (*SERVICES, HRIS):
                raise ValueError(f"{self.name}: unknown producer or consumer {party!r}")

    @property
    def partitions(self) -> int:
        return HIGH_VOLUME_PARTITIONS if self.high_volume else LOW_VOLUME_PARTITIONS

    @property
    def retention_ms(self) -> int:
        return RETAIN_FOREVER if self.compacted else DEFAULT_RETENTION_MS

    @property
    def dlq(self) -> str:
        return f"{self.name}{DLQ_SUFFIX}"

    @property
    def producers(self) -> tuple[str, ...]:
        return (self.producer, *self.other_producers)

    def key_of(self, data: EventData) -> str:
        """The message key for this payload, so one aggregate's events land on one partition in order."""
        if not isinstance(data, self.payload):
            raise TypeError(f"{self.name} carries {self.payload.__name__}, not {type(data).__name__}")
        for name in (self.key, self.key_fallback):
            value = getattr(data, name) if name is not None else None
            if value is not None:
                return str(value)
        raise ValueError(f"{self.name}: {self.payload.__name__} has no value for its key {self.key!r}")

    def kafka_config(self) -> dict[str, str]:
        """Topic-level Kafka configuration, as the admin API takes it."""
        policy: Literal["compact", "delete"] = "compact" if self.compacted else "delete"
        return {"cleanup.policy": policy, "retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class KafkaTopic:
    """One topic to create: a registry topic or its dead-letter topic."""

    name: str
    partitions: int
    config: dict[str, str] = field(hash=False)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        Topics.IPA_RECORD_SUBMITTED,
        IpaRecordSubmitted,
        key="external_ref",
        producer=HRIS,
        consumers=("order",),
        high_volume=True,
        description="An allocation from an HR system, to validate and turn into an order or a points credit.",
    ),
    TopicSpec(
        Topics.IPA_RECORD_ACCEPTED,
        IpaRecordAccepted,
        key="external_ref",
        producer="order",
        consumers=("wallet", "delivery"),
        high_volume=True,
        description="A record passed validation: a voucher reward became an order, points are credited.",
    ),
    TopicSpec(
        Topics.IPA_RECORD_REJECTED,
        IpaRecordRejected,
        key="external_ref",
        producer="order",
        consumers=("delivery",),
        description="A record failed validation, with its errors per field; for the upstream that sent it.",
    ),
    TopicSpec(
        Topics.ORDER_STATE_CHANGED,
        OrderStateChanged,
        key="order_id",
        producer="order",
        consumers=("voucher", "delivery", "wallet", "redemption", "support"),
        high_volume=True,
        description="Every change of an order's state or fulfilment status, for services and downstream.",
    ),
    TopicSpec(
        Topics.ORDER_CANCEL_REQUESTED,
        OrderCancelRequested,
        key="order_id",
        key_fallback="external_ref",
        producer=HRIS,
        consumers=("order",),
        description="Upstream asks to cancel an order (eligibility or policy change, correction).",
    ),
    TopicSpec(
        Topics.ORDER_CREATE_REQUESTED,
        OrderCreateRequested,
        key="redemption_id",
        producer="redemption",
        consumers=("order",),
        sensitive=True,
        description="The storefront saga asks for a voucher order for points already debited.",
    ),
    TopicSpec(
        Topics.CAMPAIGN_CHANGED,
        CampaignChanged,
        key="campaign_id",
        producer="voucher",
        consumers=("order",),
        compacted=True,
        description="The latest snapshot of each campaign, for validating intake against it.",
    ),
    TopicSpec(
        Topics.CAMPAIGN_ACTIVITY,
        CampaignActivity,
        key="campaign_id",
        producer="voucher",
        consumers=("delivery",),
        description="Codes generated, imported or recovered, expiry extended, budget nearly spent:"
        " posted to the campaign's Slack/Teams route.",
    ),
    TopicSpec(
        Topics.VOUCHER_ISSUED,
        VoucherIssued,
        key="order_id",
        producer="voucher",
        consumers=("order", "delivery", "wallet", "support"),
        high_volume=True,
        sensitive=True,
        description="A code was issued to an order; the code is sealed so that only delivery can open it.",
    ),
    TopicSpec(
        Topics.VOUCHER_ISSUE_FAILED,
        VoucherIssueFailed,
        key="order_id",
        producer="voucher",
        consumers=("order", "delivery"),
        description="No code could be issued for an order; it goes on hold until codes are added.",
    ),
    TopicSpec(
        Topics.VOUCHER_STOCK_LOW,
        VoucherStockLow,
        key="campaign_id",
        producer="voucher",
        consumers=("delivery",),
        description="A campaign is running out of codes; the notifier tells operators.",
    ),
    TopicSpec(
        Topics.VOUCHER_REDEEMED,
        VoucherRedeemed,
        key="code_id",
        producer="voucher",
        consumers=("redemption", "delivery"),
        high_volume=True,
        description="A partner redeemed a code, fully or partly.",
    ),
    TopicSpec(
        Topics.VOUCHER_REDEMPTION_REFUSED,
        VoucherRedemptionRefused,
        key="code_id",
        key_fallback="partner_id",
        producer="voucher",
        consumers=("redemption",),
        description="A partner's redemption was refused: unknown, expired, flagged, used up, wrong partner…",
    ),
    TopicSpec(
        Topics.VOUCHER_STATUS_CHANGED,
        VoucherStatusChanged,
        key="code_id",
        producer="voucher",
        consumers=("redemption", "delivery", "wallet", "support"),
        high_volume=True,
        description="A code's status changed: issued, redeemed, expired, flagged, recovered…",
    ),
    TopicSpec(
        Topics.DELIVERY_REQUESTED,
        DeliveryRequested,
        key="order_id",
        producer="order",
        consumers=("delivery",),
        high_volume=True,
        sensitive=True,
        description="Send an order's voucher to its recipient; carries the recipient's contact details.",
    ),
    TopicSpec(
        Topics.DELIVERY_SUCCEEDED,
        DeliverySucceeded,
        key="order_id",
        producer="delivery",
        consumers=("order", "wallet", "support", "delivery"),
        high_volume=True,
        description="A delivery attempt succeeded.",
    ),
    TopicSpec(
        Topics.DELIVERY_FAILED,
        DeliveryFailed,
        key="order_id",
        producer="delivery",
        consumers=("order", "wallet", "support", "delivery"),
        high_volume=True,
        description="A delivery attempt failed; `final` when no automatic retry follows.",
    ),
    TopicSpec(
        Topics.DELIVERY_MESSAGE_REQUESTED,
        DeliveryMessageRequested,
        key="member_id",
        producer="support",
        other_producers=("redemption", "wallet"),
        consumers=("delivery",),
        sensitive=True,
        description="Send a templated message (not a voucher) to a member; may carry contact details.",
    ),
    TopicSpec(
        Topics.WALLET_CREDIT_REQUESTED,
        WalletCreditRequested,
        key="member_id",
        producer="redemption",
        other_producers=("support",),
        consumers=("wallet",),
        high_volume=True,
        description="Add points to a member's wallet (refunds, goodwill), once per idempotency key.",
    ),
    TopicSpec(
        Topics.WALLET_DEBIT_REQUESTED,
        WalletDebitRequested,
        key="member_id",
        producer="redemption",
        consumers=("wallet",),
        description="Take points from a member's wallet; refused rather than going negative.",
    ),
    TopicSpec(
        Topics.WALLET_TRANSACTION_RECORDED,
        WalletTransactionRecorded,
        key="member_id",
        producer="wallet",
        consumers=("redemption", "support", "delivery"),
        high_volume=True,
        description="A ledger entry was appended, with the balance after it.",
    ),
    TopicSpec(
        Topics.WALLET_DEBIT_REJECTED,
        WalletDebitRejected,
        key="member_id",
        producer="wallet",
        consumers=("redemption",),
        description="A debit was refused (e.g. insufficient points); nothing was recorded.",
    ),
    TopicSpec(
        Topics.SUPPORT_RESEND_REQUESTED,
        SupportResendRequested,
        key="order_id",
        producer="support",
        consumers=("delivery", "wallet"),
        description="An agent asks for an order's voucher to be sent again.",
    ),
    TopicSpec(
        Topics.SUPPORT_SLA_BREACHED,
        SupportSlaBreached,
        key="ticket_id",
        producer="support",
        consumers=("delivery",),
        description="A ticket's SLA target is close (`kind` warning) or was missed (`kind` breach).",
    ),
    TopicSpec(
        Topics.REDEMPTION_RECORDED,
        RedemptionRecorded,
        key="member_id",
        key_fallback="record_id",
        producer="redemption",
        consumers=("wallet", "delivery"),
        high_volume=True,
        description="An offer, voucher or storefront redemption was recorded or changed status.",
    ),
    TopicSpec(
        Topics.APPROVAL_REQUESTED,
        ApprovalRequested,
        key="approval_id",
        producer="order",
        other_producers=("voucher", "wallet"),
        consumers=("delivery",),
        description="An action above its threshold waits for a second person's approval; approvers are told.",
    ),
    TopicSpec(
        Topics.APPROVAL_DECIDED,
        ApprovalDecided,
        key="approval_id",
        producer="order",
        other_producers=("voucher", "wallet"),
        consumers=("delivery",),
        description="A pending action was approved (and performed, once) or rejected, by whom and why.",
    ),
    TopicSpec(
        Topics.MEMBER_UPSERTED,
        MemberUpserted,
        key="member_id",
        producer=HRIS,
        consumers=("delivery",),
        description="A member directory entry from the HR system: contact details, preferences, opt-outs.",
    ),
)

STATUS_TOPICS: frozenset[str] = frozenset(
    {
        Topics.IPA_RECORD_ACCEPTED,
        Topics.IPA_RECORD_REJECTED,
        Topics.ORDER_STATE_CHANGED,
        Topics.VOUCHER_ISSUE_FAILED,
        Topics.VOUCHER_REDEEMED,
        Topics.VOUCHER_STATUS_CHANGED,
        Topics.DELIVERY_SUCCEEDED,
        Topics.DELIVERY_FAILED,
        Topics.WALLET_TRANSACTION_RECORDED,
        Topics.SUPPORT_SLA_BREACHED,
        Topics.REDEMPTION_RECORDED,
    }
)
"""Topics that report what happened (ids, states, amounts; never contact details or a clear code):
downstream systems that do not read Kafka receive them as signed webhooks from the delivery service,
which consumes each of them for that."""

SENSITIVE_TOPICS: frozenset[str] = frozenset(spec.name for spec in TOPICS if spec.sensitive)
"""Topics whose published outbox rows are emptied (`TopicSpec.sensitive`)."""

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
_BY_PAYLOAD: dict[type[EventData], TopicSpec] = {spec.payload: spec for spec in TOPICS}


def topic(name: str) -> TopicSpec:
    """The spec of a topic by name (a `Topics` member or its string)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}") from None


def consumed_by(service: str) -> tuple[TopicSpec, ...]:
    return tuple(spec for spec in TOPICS if service in spec.consumers)


def produced_by(service: str) -> tuple[TopicSpec, ...]:
    return tuple(spec for spec in TOPICS if service in spec.producers)


def for_payload(payload: EventData | type[EventData]) -> TopicSpec:
    """The topic a payload model belongs on: each model travels on exactly one topic."""
    model = payload if isinstance(payload, type) else type(payload)
    try:
        return _BY_PAYLOAD[model]
    except KeyError:
        raise KeyError(f"{model.__name__} is not the payload of any topic") from None


def kafka_topics() -> tuple[KafkaTopic, ...]:
    """Every Kafka topic to create: each registry topic and its dead-letter topic."""
    dlq_config = {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)}
    created: list[KafkaTopic] = []
    for spec in TOPICS:
        created.append(KafkaTopic(spec.name, spec.partitions, spec.kafka_config()))
        created.append(KafkaTopic(spec.dlq, DLQ_PARTITIONS, dict(dlq_config)))
    return tuple(created)

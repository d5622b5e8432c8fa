"""The event envelope every Kafka message carries, and the base of every payload model.

Producers are strict (unknown fields are refused when a model is built in code); consumers are
tolerant (unknown fields are ignored when a message is read), so contracts can grow additively.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

SCHEMA_VERSION = 1


class ContractViolation(ValueError):
    """A message that can never be processed: undecodable, or not matching its contract.

    `errors` lists each failing field (`{"field", "code", "message"}`, the shape of
    `ipa.record_rejected` errors) so a consumer can answer a bad record instead of only dead-lettering it.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str = "contract_violation",
        errors: Sequence[Mapping[str, str]] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.errors: tuple[Mapping[str, str], ...] = tuple(errors)


class ContractModel(BaseModel):
    """Base of every model on the wire, nested ones included: strict when built, tolerant when read."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _producers_are_strict(cls, value: Any, info: ValidationInfo) -> Any:
        # Building a model in code is the producer side: refuse fields the contract does not know.
        # Reading off the wire passes context={"tolerant": True} and unknown fields are ignored.
        if isinstance(value, dict) and not (info.context or {}).get("tolerant"):
            extra = value.keys() - _known_fields(cls)
            if extra:
                unknown = sorted(str(k) for k in extra)
                raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        return value


@functools.cache
def _known_fields(model: type[BaseModel]) -> frozenset[str]:
    """A model's field names and aliases (computed once per class: every event built checks them)."""
    fields = model.model_fields
    return frozenset(fields) | {f.alias for f in fields.values() if f.alias}


class EventData(ContractModel):
    """Base of every payload model (`data` of the envelope).

    `SCHEMA_VERSION` is the version of the payload a producer sends now. A payload whose shape changed
    incompatibly gets a new version and keeps its earlier models in `EARLIER_VERSIONS`, so consumers
    keep reading what is already on the topic (`Envelope.decode` picks the model of each message's
    version; the handler sees an instance of that model).
    """

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    EARLIER_VERSIONS: ClassVar[Mapping[int, type[EventData]]] = {}


D = TypeVar("D", bound=EventData)


class Envelope(BaseModel, Generic[D]):
    """`{"event_id", "event_type", "schema_version", "occurred_at", "producer", "correlation_id",
    "causation_id", "data"}` — DESIGN.md §5."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID
    event_type: str = Field(min_length=1)
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    occurred_at: datetime
    producer: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)
    causation_id: str | None = None
    data: D

    wire_encoding: ClassVar[str] = "utf-8"

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must carry a time zone (RFC 3339)")
        return value.astimezone(UTC)

    @classmethod
    def new(
        cls,
        *,
        event_type: str,
        producer: str,
        data: D,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope[D]:
        """A fresh envelope; a new chain of events starts its own correlation id."""
        new_id = event_id or uuid.uuid4()
        # Parametrised by the payload's own class so serialisation uses its fields, not the bound's.
        concrete = _concrete_envelope(type(data))
        return concrete(
            event_id=new_id,
            event_type=event_type,
            schema_version=data.SCHEMA_VERSION,
            occurred_at=occurred_at or datetime.now(UTC),
            producer=producer,
            correlation_id=correlation_id or str(new_id),
            causation_id=causation_id,
            data=data,
        )

    def caused(self, *, event_type: str, producer: str, data: EventData) -> Envelope[Any]:
        """An event caused by this one: same correlation id, causation = this event's id."""
        return Envelope.new(
            event_type=event_type,
            producer=producer,
            data=data,
            correlation_id=self.correlation_id,
            causation_id=str(self.event_id),
        )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        # The same JSON document as `to_json_dict`, serialised by pydantic-core (a few times faster).
        return self.model_dump_json().encode(self.wire_encoding)

    @classmethod
    def decode(cls, raw: bytes | str, data_model: type[D], *, expected_type: str | None = None) -> Self:
        """Read a message off the wire; raise ContractViolation if it can never be processed."""
        fast = _decode_valid(raw, data_model, expected_type)
        if fast is not None:
            return cast(Self, fast)
        # Something is wrong with it: read it again step by step to say what, in the order that
        # explains it best.
        try:
            text = raw.decode(cls.wire_encoding) if isinstance(raw, bytes) else raw
            document = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractViolation(f"undecodable message: {exc}", code="undecodable") from exc
        if not isinstance(document, dict):
            raise ContractViolation("message is not a JSON object", code="undecodable")
        # Type and version first: a misplaced or newer event usually fails its payload too, and
        # "wrong topic" or "too new" is the explanation an operator needs, not a field error.
        event_type = document.get("event_type")
        if expected_type is not None and isinstance(event_type, str) and event_type != expected_type:
            raise ContractViolation(
                f"event_type {event_type!r} does not belong on {expected_type!r}",
                code="wrong_event_type",
            )
        version = document.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool):
            reads = data_model.SCHEMA_VERSION
            if version > reads:
                raise ContractViolation(
                    f"schema_version {version} is newer than this consumer reads ({reads})",
                    code="unsupported_schema_version",
                )
            if version < reads:
                if version not in data_model.EARLIER_VERSIONS:
                    raise ContractViolation(
                        f"schema_version {version} is older than any this consumer reads",
                        code="unsupported_schema_version",
                    )
                data_model = cast("type[D]", data_model.EARLIER_VERSIONS[version])
        try:
            envelope = cls[data_model].model_validate(document, context={"tolerant": True})  # type: ignore[index]
        except ValidationError as exc:
            errors = [_field_error(error) for error in exc.errors()]
            first = errors[0]
            raise ContractViolation(
                f"{exc.error_count()} contract error(s); first at {first['field']}: {first['message']}",
                errors=errors,
            ) from exc
        return envelope  # type: ignore[no-any-return]


def _decode_valid(raw: bytes | str, data_model: type[EventData], expected_type: str | None) -> Any:
    """The envelope, parsed and validated in one pass by pydantic-core, when it is one this consumer
    takes as it is (about half the cost of json.loads and validating the dict); None otherwise."""
    try:
        envelope = _concrete_envelope(data_model).model_validate_json(raw, context={"tolerant": True})
    except ValidationError:
        return None
    if envelope.schema_version != data_model.SCHEMA_VERSION:
        return None
    if expected_type is not None and envelope.event_type != expected_type:
        return None
    return envelope


def _field_error(error: ErrorDetails) -> dict[str, str]:
    return {
        "field": ".".join(str(part) for part in error["loc"]),
        "code": error["type"],
        "message": error["msg"],
    }


@functools.cache
def _concrete_envelope(data_model: type[EventData]) -> type[Envelope[Any]]:
    """`Envelope[Model]`, looked up once per payload class (pydantic's own lookup costs per call)."""
    return cast("type[Envelope[Any]]", Envelope.__class_getitem__(data_model))

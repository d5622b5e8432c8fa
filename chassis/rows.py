"""Building a dataclass from a database row, or another object, that holds its fields under their names."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


class Row(Protocol):
    """A row by column name: an `asyncpg.Record`, a mapping."""

    def __getitem__(self, name: str, /) -> Any: ...


def from_row(cls: type[D], row: Row, **given: Any) -> D:
    """`cls` built from the columns of `row` named like its fields, and `given` for the fields whose
    column needs converting (an enum, a tuple, decoded JSON) or that the row does not hold as such."""
    held = {f.name: row[f.name] for f in fields(cls) if f.init and f.name not in given}
    return cls(**held, **given)


def from_attributes(cls: type[D], source: object, **given: Any) -> D:
    """`cls` built from the attributes of `source` named like its fields (an event that tells the same
    facts), and `given` for the fields `source` names otherwise or does not hold."""
    held = {
        f.name: getattr(source, f.name)
        for f in fields(cls)
        if f.init and f.name not in given and hasattr(source, f.name)
    }
    return cls(**held, **given)

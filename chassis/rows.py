"""Building a dataclass from a database row whose columns carry its fields' names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def from_row(cls: type[D], row: Mapping[str, Any], **given: Any) -> D:
    """`cls` built from the columns of `row` named like its fields, and `given` for the fields whose
    column needs converting (an enum, a tuple, decoded JSON) or that the row does not hold as such."""
    held = {f.name: row[f.name] for f in fields(cls) if f.init and f.name not in given}
    return cls(**held, **given)

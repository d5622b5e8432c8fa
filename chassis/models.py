"""Building a model from an object that holds most of its fields under the same names."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def model_from(model: type[M], source: object, **given: Any) -> M:
    """`model` validated from the attributes of `source` named like its fields, and `given` for the
    fields `source` names otherwise or does not hold (`given` wins over `source`)."""
    shared = {name: getattr(source, name) for name in model.model_fields if hasattr(source, name)}
    return model.model_validate({**shared, **given})

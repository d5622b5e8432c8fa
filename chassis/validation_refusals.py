"""For tests of request models: where a model refuses a body, named the way a 422 problem names it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def refused_fields(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[int | str, ...]]:
    """The location of each error `model` finds in `body`; empty when it accepts the body."""
    try:
        model.model_validate(body)
    except ValidationError as refused:
        return [error["loc"] for error in refused.errors()]
    return []

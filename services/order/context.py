"""What the HTTP routes and hooks of one order service process share, filled in at startup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request

from chassis.approvals import Approvals

from .batches import BatchWorker
from .settings import OrderSettings


@dataclass
class OrderContext:
    settings: OrderSettings
    worker: BatchWorker | None = None
    # Set by `build_spec` right after the context: the approval actions it holds need the context.
    approvals: Approvals = field(init=False)

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()


def order_context(request: Request) -> OrderContext:
    """The running service's context, as `build_spec` made it."""
    return cast(OrderContext, request.app.state.runtime.spec.context)


Ctx = Annotated[OrderContext, Depends(order_context)]

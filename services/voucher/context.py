"""What the voucher routes and jobs share, as `build_spec` made it: the code vault, the approval gates,
the settings and the database pool (set at startup); the routes reach it as
`request.app.state.runtime.spec.context`."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from chassis.approvals import Approvals

from .crypto import CodeVault
from .settings import VoucherSettings


@dataclass
class VoucherContext:
    vault: CodeVault
    approvals: Approvals
    settings: VoucherSettings
    pool: asyncpg.Pool | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the voucher service has not started: no database pool yet")
        return self.pool

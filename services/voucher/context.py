"""What the voucher routes and jobs share, as `build_spec` made it: the code vault, the approval gates
and the settings; the routes reach it as `request.app.state.runtime.spec.context` and take the pool
as `chassis.deps.DbPool`."""

from __future__ import annotations

from dataclasses import dataclass

from chassis.approvals import Approvals

from .crypto import CodeVault
from .settings import VoucherSettings


@dataclass
class VoucherContext:
    vault: CodeVault
    approvals: Approvals
    settings: VoucherSettings

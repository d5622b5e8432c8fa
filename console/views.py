"""View models: what a page shows, made from the services' answers. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

ORDER_STATES = ("pending", "cancelled", "completed")
FULFILMENT_STATUSES = ("awaiting_voucher", "on_hold", "delivering", "delivery_failed")
ORDER_SORTS = {"-created_at": "Newest first", "created_at": "Oldest first", "-updated_at": "Recently changed"}
CANCEL_ROLES = frozenset({"admin", "ops"})


@dataclass(frozen=True)
class Tab:
    state: str
    label: str
    count: int
    active: bool


def order_tabs(summary: Mapping[str, Any], active: str) -> list[Tab]:
    """The pending / cancelled / completed tabs, each with its exact count from the order summary."""
    by_state = summary.get("by_state") or {}
    return [
        Tab(state, state.capitalize(), int(by_state.get(state, 0)), state == active) for state in ORDER_STATES
    ]


@dataclass(frozen=True)
class OrderFilters:
    state: str
    campaign_id: str
    member_id: str
    fulfilment_status: str
    needs_attention: bool
    created_from: str
    created_to: str
    sort: str

    def api_params(self) -> dict[str, str]:
        """The query of `GET /v1/orders` (dates as whole UTC days, `to` inclusive of its day)."""
        first, last = _day(self.created_from), _day(self.created_to)
        params = {
            **vars(self),
            "needs_attention": "true" if self.needs_attention else "",
            "created_from": _utc_midnight(first).isoformat() if first else "",
            "created_to": _utc_midnight(last + timedelta(days=1)).isoformat() if last else "",
        }
        return _given(params)

    @property
    def narrowed(self) -> bool:
        """Whether anything beyond the state tab narrows the listing (a bulk cancel needs it)."""
        return bool(
            self.campaign_id
            or self.member_id
            or self.fulfilment_status
            or self.needs_attention
            or self.created_from
            or self.created_to
        )

    def fields(self) -> dict[str, str]:
        """The filter as form fields, to carry it through a preview to its confirmation."""
        return dict(parse_qsl(self.query()))

    def query(self, **changes: str) -> str:
        """This filter as a page query string, with `changes` applied (e.g. another tab)."""
        from urllib.parse import urlencode

        values = {**vars(self), "needs_attention": "1" if self.needs_attention else ""} | changes
        return urlencode(_given(values))


def order_filters(query: Mapping[str, str]) -> OrderFilters:
    """Filters from a page's query string; unknown values fall back to the defaults."""
    return OrderFilters(
        state=_choice(query, "state", ORDER_STATES, "pending"),
        campaign_id=_text(query, "campaign_id", 64),
        member_id=_text(query, "member_id", 64),
        fulfilment_status=_choice(query, "fulfilment_status", FULFILMENT_STATUSES),
        needs_attention=query.get("needs_attention", "") in ("1", "true", "on"),
        created_from=_day_text(query, "created_from"),
        created_to=_day_text(query, "created_to"),
        sort=_choice(query, "sort", ORDER_SORTS, "-created_at"),
    )


def _text(query: Mapping[str, str], name: str, limit: int) -> str:
    return query.get(name, "").strip()[:limit]


def _choice(query: Mapping[str, str], name: str, choices: Iterable[str], default: str = "") -> str:
    """The query's value if it is one of `choices`, else `default`."""
    value = query.get(name, default)
    return value if value in choices else default


def _day_text(query: Mapping[str, str], name: str) -> str:
    """The query's value if it is a date, else empty."""
    value = query.get(name, "")
    return value if _day(value) else ""


def _given(values: Mapping[str, str]) -> dict[str, str]:
    """The values that are not empty: a filter left empty is not sent."""
    return {key: value for key, value in values.items() if value}


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def when(value: str | None) -> str:
    """An RFC 3339 time as `2026-12-05 12:30 UTC`; empty stays empty."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def money(amount: str | None, currency: str | None) -> str:
    if amount is None:
        return ""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return f"{amount} {currency or ''}".strip()
    return f"{value:,.2f} {currency or ''}".strip()


def points(amount: str | None) -> str:
    if amount is None:
        return "0"
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return amount
    return f"{value.normalize():,f}" if value == value.to_integral() else f"{value:,}"


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    booking_id: str
    member_id: str
    campaign_id: str
    amount: str
    state: str
    fulfilment_status: str
    needs_attention: bool
    created: str


def order_rows(items: Iterable[Mapping[str, Any]]) -> list[OrderRow]:
    return [
        OrderRow(
            order_id=str(item["order_id"]),
            booking_id=str(item["booking_id"]),
            member_id=str(item["member_id"]),
            campaign_id=str(item["campaign_id"]),
            amount=money(item.get("amount"), item.get("currency")),
            state=str(item["state"]),
            fulfilment_status=str(item.get("fulfilment_status") or ""),
            needs_attention=bool(item.get("needs_attention")),
            created=when(item.get("created_at")),
        )
        for item in items
    ]


@dataclass(frozen=True)
class TimelineStep:
    at: str
    event: str
    change: str
    actor: str
    reason: str
    applied: bool


def timeline(entries: Iterable[Mapping[str, Any]]) -> list[TimelineStep]:
    """An order's timeline, oldest first, each step saying what changed."""
    steps = []
    for entry in entries:
        before = "/".join(
            filter(None, [entry.get("previous_state"), entry.get("previous_fulfilment_status")])
        )
        after = "/".join(filter(None, [entry.get("state"), entry.get("fulfilment_status")]))
        steps.append(
            TimelineStep(
                at=when(entry.get("at")),
                event=str(entry.get("event", "")),
                change=f"{before} → {after}" if before and before != after else after,
                actor=str(entry.get("actor", "")),
                reason=str(entry.get("reason") or ""),
                applied=bool(entry.get("applied", True)),
            )
        )
    return steps


def may_cancel(order: Mapping[str, Any], roles: Iterable[str]) -> bool:
    """Only pending orders can be cancelled, and only by the roles the order service admits."""
    return order.get("state") == "pending" and not CANCEL_ROLES.isdisjoint(roles)


@dataclass(frozen=True)
class LedgerLine:
    at: str
    kind: str
    amount: str
    balance_after: str
    reason: str


def ledger_lines(entries: Iterable[Mapping[str, Any]]) -> list[LedgerLine]:
    lines = []
    for entry in entries:
        sign = "\u2212" if entry.get("direction") == "debit" else "+"
        lines.append(
            LedgerLine(
                at=when(entry.get("recorded_at")),
                kind=str(entry.get("entry_type", "")).replace("_", " "),
                amount=f"{sign}{points(entry.get('amount'))}",
                balance_after=points(entry.get("balance_after")),
                reason=str(entry.get("reason") or entry.get("reason_code") or ""),
            )
        )
    return lines


@dataclass(frozen=True)
class Health:
    name: str
    url: str
    ready: bool
    detail: str


def health_rows(answers: Mapping[str, tuple[str, int | None]]) -> list[Health]:
    """Each service's readiness from the status its `/health/ready` answered (None: no answer)."""
    rows = []
    for name, (url, status) in answers.items():
        if status is None:
            rows.append(Health(name, url, False, "no answer"))
        else:
            rows.append(
                Health(name, url, status == 200, "ready" if status == 200 else f"not ready ({status})")
            )
    return rows


@dataclass(frozen=True)
class FailedDelivery:
    delivery_id: str
    booking_id: str
    member_id: str
    channel: str
    recipient: str
    reason: str
    attempts: int
    failed: str


def failed_deliveries(items: Iterable[Mapping[str, Any]]) -> list[FailedDelivery]:
    """The failed-delivery queue: who it was for, where it went (masked) and why it failed."""
    rows = []
    for item in items:
        channel = str(item.get("channel") or item.get("requested_channel") or "")
        recipient = item.get("email") if channel == "email" else item.get("phone")
        rows.append(
            FailedDelivery(
                delivery_id=str(item["delivery_id"]),
                booking_id=str(item.get("booking_id") or item.get("template") or ""),
                member_id=str(item.get("member_id") or ""),
                channel=channel,
                recipient=str(recipient or item.get("email") or item.get("phone") or ""),
                reason=str(item.get("last_reason_code") or "").replace("_", " "),
                attempts=int(item.get("attempts") or 0),
                failed=when(item.get("failed_at")),
            )
        )
    return rows


@dataclass(frozen=True)
class CampaignStock:
    campaign_id: str
    name: str
    status: str
    reward_type: str
    available: int
    issued: int
    redeemed: int
    low_stock: bool
    threshold: int


def campaign_stock(campaign: Mapping[str, Any], overview: Mapping[str, Any] | None) -> CampaignStock:
    """A campaign's line: its real codes per status and whether stock is below its threshold."""
    counts: Mapping[str, int] = (overview or {}).get("code_counts") or {}
    available = int(counts.get("available", 0))
    threshold = int(campaign.get("low_stock_threshold") or 0)
    vouchers = campaign.get("reward_type", "voucher") == "voucher"
    return CampaignStock(
        campaign_id=str(campaign["campaign_id"]),
        name=str(campaign.get("name") or ""),
        status=str(campaign.get("status") or ""),
        reward_type=str(campaign.get("reward_type") or "voucher"),
        available=available,
        issued=int(counts.get("issued", 0)) + int(counts.get("delivered", 0)),
        redeemed=int(counts.get("redeemed", 0)) + int(counts.get("partially_redeemed", 0)),
        low_stock=vouchers and campaign.get("status") == "active" and available <= threshold,
        threshold=threshold,
    )


BATCH_STEPS = ("validating", "accepting", "completed")
BATCH_DONE = frozenset({"completed", "failed", "declined"})


@dataclass(frozen=True)
class BatchProgress:
    batch_id: str
    status: str
    step: int
    """1 validating, 2 accepting, 3 done (0 while queued)."""
    percent: int
    received: int
    accepted: int
    rejected: int
    done: bool
    file_name: str


def batch_progress(batch: Mapping[str, Any]) -> BatchProgress:
    """Where an upload stands: validating its rows, then accepting them, then done."""
    status = str(batch.get("status") or "")
    received = int(batch.get("received") or 0)
    validated = int(batch.get("validated") or 0)
    accepted = int(batch.get("accepted") or 0)
    rejected = int(batch.get("rejected") or 0)
    done = status in BATCH_DONE
    if done:
        percent = 100
    elif status == "accepting":
        valid = int(batch.get("valid") or 0)
        percent = 50 + (50 * accepted // valid if valid else 50)
    elif status == "validating":
        percent = 50 * validated // received if received else 0
    else:
        percent = 0
    step = BATCH_STEPS.index(status) + 1 if status in BATCH_STEPS else (3 if done else 0)
    return BatchProgress(
        batch_id=str(batch.get("batch_id") or ""),
        status=status,
        step=step,
        percent=min(percent, 100),
        received=received,
        accepted=accepted,
        rejected=rejected,
        done=done,
        file_name=str(batch.get("file_name") or ""),
    )


UPLOAD_MODES = {
    "accept_valid": "Accept the valid rows, report the others",
    "all_or_nothing": "All or nothing: any bad row refuses the file",
    "dry_run": "Dry run: validate only, accept nothing",
}


TICKET_CATEGORIES = ("missing_delivery", "malfunctioning_code", "redemption_failure", "other")
TICKET_PRIORITIES = ("low", "medium", "high", "urgent")
TICKET_MOVES: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "waiting_on_customer", "resolved"),
    "in_progress": ("waiting_on_customer", "resolved"),
    "waiting_on_customer": ("in_progress", "resolved"),
    "resolved": ("closed", "open"),
    "closed": ("open",),
}
MEMBER_MOVES: dict[str, tuple[str, ...]] = {"resolved": ("open", "closed"), "closed": ("open",)}


@dataclass(frozen=True)
class TicketLine:
    ticket_id: str
    member_id: str
    category: str
    priority: str
    state: str
    assignee: str
    opened: str
    sla: str
    """The worse of its two targets: `breached`, `warning`, `on_track`, `met` or `missed`."""
    due: str


_SLA_SEVERITY = ("breached", "missed", "warning", "on_track", "met")


def ticket_lines(items: Iterable[Mapping[str, Any]]) -> list[TicketLine]:
    """The ticket queue, each ticket with the SLA target most at risk and when it falls due."""
    lines = []
    for item in items:
        sla = item.get("sla") or {}
        targets = [t for t in (sla.get("first_response"), sla.get("resolution")) if isinstance(t, Mapping)]
        worst = min(
            targets,
            key=lambda t: _SLA_SEVERITY.index(t["status"]) if t.get("status") in _SLA_SEVERITY else 99,
            default={},
        )
        lines.append(
            TicketLine(
                ticket_id=str(item["ticket_id"]),
                member_id=str(item.get("member_id") or ""),
                category=str(item.get("category", "")).replace("_", " "),
                priority=str(item.get("priority", "")),
                state=str(item.get("state", "")),
                assignee=str(item.get("assignee") or "unassigned"),
                opened=when(item.get("opened_at")),
                sla=str(worst.get("status") or ""),
                due=when(worst.get("due_at")),
            )
        )
    return lines


def ticket_moves(state: str, roles: Iterable[str]) -> tuple[str, ...]:
    """Where a ticket may go next for this person (members only reopen or close resolved ones)."""
    held = frozenset(roles)
    if held & {"admin", "ops", "support_agent"}:
        return TICKET_MOVES.get(state, ())
    if "member" in held:
        return MEMBER_MOVES.get(state, ())
    return ()


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    width: int
    """Out of 100: this bar's share of the longest bar of its chart."""


def bars(rows: Iterable[Mapping[str, Any]], *, limit: int = 14) -> list[Bar]:
    """A bar chart of redemption counts from one aggregate (`value`, `records`), in the given order."""
    picked = [(str(row.get("value") or "—"), int(row.get("records") or 0)) for row in rows][:limit]
    longest = max((value for _, value in picked), default=0)
    return [Bar(label, value, round(100 * value / longest) if longest else 0) for label, value in picked]


REDEMPTION_STATUSES = ("successful", "pending", "failed", "expired")


@dataclass(frozen=True)
class RedemptionFilters:
    offer_id: str
    partner_id: str
    channel: str
    status: str
    date_from: str
    date_to: str

    def api_params(self) -> dict[str, str]:
        dates = {"from": self.date_from, "to": self.date_to}
        chosen = {name: value for name, value in vars(self).items() if name not in ("date_from", "date_to")}
        return _given({**chosen, **dates, "limit": "50"})


def redemption_filters(query: Mapping[str, str]) -> RedemptionFilters:
    return RedemptionFilters(
        offer_id=_text(query, "offer_id", 200),
        partner_id=_text(query, "partner_id", 200),
        channel=_text(query, "channel", 64),
        status=_choice(query, "status", REDEMPTION_STATUSES),
        date_from=_day_text(query, "from"),
        date_to=_day_text(query, "to"),
    )


REVEAL_ROLES = ("admin", "support_agent", "member")


def reveal_target(pointer: Mapping[str, Any]) -> str | None:
    """The voucher service path the wallet points to for a reveal; anything else is not followed."""
    reveal = pointer.get("reveal")
    if not isinstance(reveal, Mapping) or reveal.get("service") != "voucher":
        return None
    path = str(reveal.get("path") or "")
    parts = path.split("/")
    if len(parts) != 5 or parts[:3] != ["", "v1", "codes"] or parts[4] != "reveal" or not parts[3]:
        return None
    return path


CAMPAIGN_ACTIONS = {"pause": "paused", "resume": "resumed", "end": "ended"}


def campaign_actions(status: str) -> tuple[str, ...]:
    """What can be done to a campaign in this status: pause an active one, resume a paused one."""
    return {"active": ("pause", "end"), "paused": ("resume", "end")}.get(status, ())


AGENT_ACTION_ROLES = ("admin", "ops", "support_agent")
PORTAL_READERS = ("admin", "auditor", "ops", "support_agent")


@dataclass(frozen=True)
class Preview:
    """A dry run as shown before its confirmation: what would change, and the confirm button's label."""

    headline: str
    details: tuple[str, ...]
    count: int
    """How many things the confirmation would change (0: nothing to confirm)."""
    confirm: str


def _plural(n: int, noun: str, many: str = "") -> str:
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def bulk_cancel_preview(answer: Mapping[str, Any], reason: str, shown: int = 20) -> Preview:
    """The order service's dry run of a bulk cancel, as the preview someone confirms."""
    n = int(answer.get("cancellable") or 0)
    bookings = [str(o.get("booking_id")) for o in (answer.get("orders") or [])[:shown]]
    details = [
        f"{_plural(int(answer.get('matched') or 0), 'order')} match these filters; "
        f"{int(answer.get('skipped_completed') or 0)} completed and "
        f"{int(answer.get('skipped_cancelled') or 0)} already cancelled are left as they are.",
        f"Reason: {reason}",
    ]
    if bookings:
        details.append("First of them: " + ", ".join(bookings) + (" …" if n > len(bookings) else ""))
    return Preview(
        f"{_plural(n, 'pending order')} would be cancelled", tuple(details), n, f"Confirm: cancel {n} orders"
    )


def bulk_cancel_outcome(answer: Mapping[str, Any]) -> str:
    """What a confirmed bulk cancel did, or that it waits for a second person's approval."""
    if answer.get("approval_id"):
        return f"The bulk cancel waits for a second person's approval ({answer['approval_id']})."
    done = int(answer.get("cancelled") or 0)
    skipped = int(answer.get("skipped_completed") or 0) + int(answer.get("skipped_cancelled") or 0)
    return f"{done} order{'' if done == 1 else 's'} cancelled; {skipped} already completed or cancelled."


SLA_REPORT_ROLES = ("admin", "auditor", "ops", "support_agent")


@dataclass(frozen=True)
class SlaLine:
    group: str
    tickets: int
    first_response: str
    resolution: str
    below_target: bool
    """Either target met for fewer tickets than `SLA_TARGET_SHARE`."""


SLA_TARGET_SHARE = 0.9


def _share_text(target: Mapping[str, Any]) -> str:
    share = target.get("share_met")
    if share is None:
        return "—"
    met, missed = int(target.get("met") or 0), int(target.get("missed") or 0)
    return f"{100 * float(share):.1f}% ({met} of {met + missed})"


def sla_lines(rows: Iterable[Mapping[str, Any]], key: str) -> list[SlaLine]:
    """One group of the SLA compliance report (per priority, category or week) as table lines."""
    lines = []
    for row in rows:
        first, resolution = row.get("first_response") or {}, row.get("resolution") or {}
        shares = [float(t["share_met"]) for t in (first, resolution) if t.get("share_met") is not None]
        lines.append(
            SlaLine(
                group=str(row.get(key) or "—").replace("_", " "),
                tickets=int(row.get("tickets") or 0),
                first_response=_share_text(first),
                resolution=_share_text(resolution),
                below_target=any(share < SLA_TARGET_SHARE for share in shares),
            )
        )
    return lines


CHANNELS = ("email", "sms", "whatsapp")
EXPIRY_KINDS = {"none": "Never", "fixed_date": "On a date", "days_after_issue": "Days after issue"}
CODE_STATUSES = (
    "available",
    "issued",
    "partially_redeemed",
    "redeemed",
    "expired",
    "flagged",
    "recovered",
    "void",
)
CAMPAIGN_TEXT_FIELDS = ("name", "brand", "face_value", "currency", "budget", "per_record_limit")


def campaign_body(form: Mapping[str, str], *, creating: bool) -> dict[str, Any]:
    """A campaign's create (POST) or change (PATCH) body from its form; blank fields are left out,
    so a change keeps what it does not name. The voucher service judges the values."""
    body: dict[str, Any] = {}
    if creating and form.get("campaign_id", "").strip():
        body["campaign_id"] = form["campaign_id"].strip()
    for name in CAMPAIGN_TEXT_FIELDS:
        if value := form.get(name, "").strip():
            body[name] = value.upper() if name == "currency" else value
    if (channel := form.get("default_channel", "")) in CHANNELS:
        body["default_channel"] = channel
    if (threshold := form.get("low_stock_threshold", "").strip()).isdigit():
        body["low_stock_threshold"] = int(threshold)
    if "partner_ids" in form and (creating or form["partner_ids"].strip()):
        body["partner_ids"] = [p.strip() for p in form["partner_ids"].split(",") if p.strip()]
    kind = form.get("expiry_kind", "")
    if kind == "none":
        body["expiry_policy"] = {"kind": "none"}
    elif kind == "fixed_date" and (day := _day(form.get("expiry_date", ""))):
        body["expiry_policy"] = {"kind": kind, "expires_at": end_of_day(day)}
    elif kind == "days_after_issue" and (days := form.get("expiry_days", "").strip()).isdigit():
        body["expiry_policy"] = {"kind": kind, "days": int(days)}
    return body


def end_of_day(day: date) -> str:
    """The last second of a UTC day, as an expiry someone picking that date means."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC).isoformat()


@dataclass(frozen=True)
class StockLine:
    status: str
    real: int
    test: int


def code_stock(overview: Mapping[str, Any]) -> list[StockLine]:
    """A campaign's codes per status, real ones and UAT test ones apart; statuses without any left out."""
    real: Mapping[str, int] = overview.get("code_counts") or {}
    test: Mapping[str, int] = overview.get("test_code_counts") or {}
    known = [s for s in CODE_STATUSES if s in real or s in test]
    others = sorted((set(real) | set(test)) - set(known))
    return [
        StockLine(status.replace("_", " "), int(real.get(status, 0)), int(test.get(status, 0)))
        for status in [*known, *others]
        if real.get(status) or test.get(status)
    ]


def expiry_preview(answer: Mapping[str, Any], campaign_id: str, day: date) -> Preview:
    n = int(answer.get("would_change") or 0)
    return Preview(
        f"{_plural(n, 'code')} of {campaign_id} would expire at the end of {day.isoformat()} (UTC)",
        ("Only codes that would otherwise expire sooner change; nothing is changed until you confirm.",),
        n,
        f"Confirm: extend {_plural(n, 'code')}",
    )


def recovery_preview(answer: Mapping[str, Any], campaign_id: str) -> Preview:
    n = int(answer.get("matched") or 0)
    return Preview(
        f"{_plural(n, 'code')} of {campaign_id} would be recovered",
        (
            "An undelivered code returns to its pool; a delivered one is voided for good and its order "
            "is given a fresh code, which is delivered.",
        ),
        n,
        f"Confirm: recover {_plural(n, 'code')}",
    )


def code_outcome(answer: Mapping[str, Any]) -> str:
    """What a confirmed extension or recovery did, or that it waits for a second person's approval."""
    if answer.get("approval_id"):
        return f"This waits for a second person's approval ({answer['approval_id']})."
    if "changed" in answer:
        return f"{_plural(int(answer['changed'] or 0), 'code')} extended."
    replaced = len(answer.get("replaced") or [])
    recovered = _plural(int(answer.get("recovered") or 0), "code")
    return f"{recovered} recovered; {replaced} orders given a fresh code."


def import_outcome(report: Mapping[str, Any]) -> tuple[str, str]:
    """A code import's report as a flash: its kind and text (problems named by row)."""
    imported, rejected = int(report.get("imported") or 0), int(report.get("rejected") or 0)
    text = f"{_plural(imported, 'code')} imported, {rejected} rejected."
    problems = report.get("problems") or []
    if problems:
        text += " " + "; ".join(f"row {p.get('row')}: {p.get('message')}" for p in problems[:5])
    return ("error" if rejected and not imported else "ok"), text


def resend_outcome(results: Iterable[Mapping[str, Any]]) -> str:
    """A bulk resend's answers counted: how many were queued, and why the others were refused."""
    queued = 0
    refused: dict[str, int] = {}
    for result in results:
        if result.get("status") == "queued":
            queued += 1
        else:
            reason = str(result.get("code") or "refused").replace("_", " ")
            refused[reason] = refused.get(reason, 0) + 1
    text = f"{_plural(queued, 'delivery', 'deliveries')} queued to be sent again."
    if refused:
        text += " Refused: " + ", ".join(f"{n} {reason}" for reason, n in sorted(refused.items())) + "."
    return text


EXPORT_PURPOSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "partner_settlement": ("Partner settlement", ("admin", "finance", "partner")),
    "finance_reconciliation": ("Finance reconciliation", ("admin", "finance")),
    "analytics": ("Analytics (no member ids)", ("admin", "ops")),
    "audit": ("Audit (with member ids)", ("admin", "auditor")),
}
"""Each redemption export purpose, its label and the roles the redemption service lets use it."""


def export_purposes(roles: Iterable[str]) -> dict[str, str]:
    """The export purposes someone holding `roles` may ask for, by purpose with their labels."""
    held = frozenset(roles)
    return {key: label for key, (label, allowed) in EXPORT_PURPOSES.items() if held & set(allowed)}


@dataclass(frozen=True)
class ExportLine:
    export_id: str
    purpose: str
    format: str
    status: str
    percent: int
    rows: str
    reason: str
    requested: str
    ready: bool


def export_lines(exports: Iterable[Mapping[str, Any]]) -> list[ExportLine]:
    """Requested exports with their purpose and progress, newest first."""
    lines = []
    for job in exports:
        progress = job.get("progress") or {}
        total = progress.get("rows_total")
        lines.append(
            ExportLine(
                export_id=str(job["export_id"]),
                purpose=EXPORT_PURPOSES.get(str(job.get("purpose")), (str(job.get("purpose")), ()))[0],
                format=str(job.get("format") or ""),
                status=str(job.get("status") or ""),
                percent=int(progress.get("percent") or 0),
                rows=f"{progress.get('rows_done') or 0} of {total}" if total is not None else "",
                reason=str(job.get("reason") or ""),
                requested=when(job.get("created_at")),
                ready=job.get("status") == "ready",
            )
        )
    return sorted(lines, key=lambda line: line.requested, reverse=True)


def export_filters(filters: RedemptionFilters) -> dict[str, str]:
    """The dashboard's filters as an export's (the export takes no status page size)."""
    return {key: value for key, value in filters.api_params().items() if key != "limit"}

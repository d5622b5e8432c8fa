"""Operations: every service's health, consumer lag per group, outbox lag, dead letters with their
replay (dry run, then confirm), parked outbox events and pending approvals with approve and reject.

Each service answers for itself (`/v1/ops/*`, `/v1/approvals`); a service that does not answer leaves
its rows out and says so, the rest of the page still shows. The view models below are pure functions
of the services' answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

import httpx
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.api import ApiError
from console.auth import CSRF_CHECKED, Viewer
from console.pages import act, allowed, api_for, back_to, flash, refusal, render, segment
from console.settings import SERVICES, ConsoleSettings

router = APIRouter(include_in_schema=False)
Operator = Annotated[Viewer, Depends(allowed("operations"))]

DECIDER_ROLES: Final = ("admin", "approver")
"""Who may approve or reject (chassis/approvals.py); never the person who asked."""
DEAD_LETTERS_SHOWN: Final = 50

Answers = Mapping[str, Any]
"""Service name → its answer, or None when it did not answer (or refused)."""


@dataclass(frozen=True)
class GroupLag:
    service: str
    group: str
    subscription: str
    topic: str
    lag: int
    partitions: str
    """`partition: committed/end` for each partition, for the table."""


def lag_rows(answers: Answers) -> list[GroupLag]:
    """Every consumer group of every service that answered `GET /v1/ops/consumers`, most behind first."""
    rows = []
    for service, report in answers.items():
        for group in (report or {}).get("groups", []):
            partitions = ", ".join(
                f"{p['partition']}: {'-' if p.get('committed_offset') is None else p['committed_offset']}"
                f"/{p['end_offset']}"
                for p in group.get("partitions", [])
            )
            rows.append(
                GroupLag(
                    service=service,
                    group=str(group["group"]),
                    subscription=str(group.get("subscription", "")),
                    topic=str(group["topic"]),
                    lag=int(group.get("lag") or 0),
                    partitions=partitions,
                )
            )
    return sorted(rows, key=lambda r: (-r.lag, r.service, r.subscription))


LAG_SERIES: Final = "messages behind"


def lag_chart(rows: Iterable[GroupLag], *, limit: int = 14) -> charts.StackedChart:
    """The groups most behind as bars (`rows` come most behind first); none behind is an empty chart."""
    behind = [r for r in rows if r.lag][:limit]
    return charts.stacked(
        "Consumer groups most behind",
        (LAG_SERIES,),
        [f"{r.service} {r.subscription}" for r in behind],
        {(f"{r.service} {r.subscription}", LAG_SERIES): r.lag for r in behind},
    )


@dataclass(frozen=True)
class OutboxRow:
    service: str
    answered: bool
    unpublished: int
    oldest: str
    parked: int
    relay: str


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def outbox_rows(answers: Answers) -> list[OutboxRow]:
    """Each service's outbox: how much waits, for how long, what is parked and who relays it."""
    rows = []
    for service, status in answers.items():
        if status is None:
            rows.append(OutboxRow(service, False, 0, "—", 0, "no answer"))
            continue
        waiting = int(status.get("unpublished") or 0)
        relay = status.get("relay") or {}
        rows.append(
            OutboxRow(
                service=service,
                answered=True,
                unpublished=waiting,
                oldest=_seconds(float(status.get("oldest_unpublished_age_s") or 0)) if waiting else "—",
                parked=int(status.get("parked") or 0),
                relay=str(relay.get("holder") or "no leader"),
            )
        )
    return rows


@dataclass(frozen=True)
class DeadLetterRow:
    service: str
    group: str
    subscription: str
    topic: str
    event_id: str
    key: str
    error_code: str
    error: str
    attempts: int
    failed: str
    failed_at: str
    replayed: str
    """When and by whom it was last replayed since it failed (empty: not yet)."""


def _replayed(item: Mapping[str, Any]) -> str:
    if not item.get("replayed_at"):
        return ""
    return f"replayed {views.when(item['replayed_at'])} by {item.get('replayed_by') or 'someone'}"


def dead_letter_rows(answers: Answers) -> list[DeadLetterRow]:
    """The dead letters of every service, newest first; their payload is never shown (nor sent)."""
    rows = [
        DeadLetterRow(
            service=service,
            group=str(item["group"]),
            subscription=str(item.get("subscription", "")),
            topic=str(item.get("original_topic", "")),
            event_id=str(item.get("event_id") or ""),
            key=str(item.get("key") or ""),
            error_code=str(item.get("error_code", "")),
            error=str(item.get("error", ""))[:300],
            attempts=int(item.get("attempts") or 0),
            failed=views.when(item.get("failed_at")),
            failed_at=str(item.get("failed_at") or ""),
            replayed=_replayed(item),
        )
        for service, page in answers.items()
        for item in (page or {}).get("items", [])
    ]
    return sorted(rows, key=lambda r: r.failed_at, reverse=True)


def replay_preview(answer: Mapping[str, Any], shown: int = 20) -> views.Preview:
    """A dry-run replay's answer, as the preview someone confirms."""
    n = int(answer.get("replayed") or 0)
    group = str(answer.get("group", ""))
    letters = list(answer.get("letters") or [])
    noun = "dead letter" if n == 1 else "dead letters"
    details = [
        f"Each goes back to {answer.get('dlq_topic', '').removesuffix('.dlq')} for {group} alone; "
        "the other groups reading that topic pass it over. An event the group handled already "
        "changes nothing."
    ]
    for letter in letters[:shown]:
        details.append(
            f"{letter.get('event_id') or '(no event id)'} · {letter.get('error_code')}: {letter.get('error')}"
        )
    if len(letters) > shown:
        details.append(f"… and {len(letters) - shown} more.")
    if n == 0:
        return views.Preview(f"Nothing to replay for {group}", tuple(details[1:]), 0, "")
    return views.Preview(
        f"{n} {noun} would be replayed to {group}", tuple(details), n, f"Confirm: replay {n}"
    )


@dataclass(frozen=True)
class ApprovalRow:
    service: str
    approval_id: str
    kind: str
    summary: str
    maker: str
    reason: str
    requested: str
    may_decide: bool
    why_not: str
    """Why the viewer may not decide it (empty when they may)."""


def approval_rows(answers: Answers, viewer_sub: str, viewer_roles: Iterable[str]) -> list[ApprovalRow]:
    """Pending approvals of every service that gates actions, oldest first; only a decider who did not
    ask may approve or reject."""
    decider = not frozenset(viewer_roles).isdisjoint(DECIDER_ROLES)
    rows = []
    for service, page in answers.items():
        for item in (page or {}).get("items", []):
            if item.get("status", "pending") != "pending":
                continue
            maker = str(item.get("maker", ""))
            own = str(item.get("maker_sub", maker)) == viewer_sub
            why_not = (
                "" if decider and not own else ("you asked for it" if own else "needs the approver role")
            )
            rows.append(
                ApprovalRow(
                    service=service,
                    approval_id=str(item["approval_id"]),
                    kind=str(item.get("kind", "")),
                    summary=str(item.get("summary", "")),
                    maker=maker,
                    reason=str(item.get("reason") or ""),
                    requested=views.when(item.get("created_at")),
                    may_decide=not why_not,
                    why_not=why_not,
                )
            )
    return sorted(rows, key=lambda r: r.requested)


async def _each_service(call: Any) -> tuple[dict[str, Any], list[str]]:
    """`call(service)` on every service at once: the answers (None where it failed) and one line per
    failure. A 404 means the service has no such routes (not every service gates actions): no line."""

    async def one(service: str) -> tuple[Any, str | None]:
        try:
            return await call(service), None
        except ApiError as exc:
            return None, None if exc.status == 404 else f"{service}: {exc.detail}"

    results = await asyncio.gather(*(one(service) for service in SERVICES))
    answers = {service: answer for service, (answer, _) in zip(SERVICES, results, strict=True)}
    return answers, [problem for _, problem in results if problem]


async def _health(request: Request) -> list[views.Health]:
    settings: ConsoleSettings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http

    async def probe(url: str) -> int | None:
        try:
            return (await client.get(url + "/health/ready", timeout=3.0)).status_code
        except httpx.HTTPError:
            return None

    urls = {name: settings.service_url(name) for name in SERVICES}
    statuses = await asyncio.gather(*(probe(url) for url in urls.values()))
    return views.health_rows(
        {name: (url, status) for (name, url), status in zip(urls.items(), statuses, strict=True)}
    )


@router.get("/operations", response_class=HTMLResponse)
async def operations(request: Request, viewer: Operator) -> Response:
    api = api_for(request, viewer)

    def each(path: str, params: dict[str, str] | None = None) -> Awaitable[tuple[dict[str, Any], list[str]]]:
        return _each_service(lambda service: api.get(service, path, params))

    (
        health,
        (consumers, c_problems),
        (outbox, o_problems),
        (dlq, d_problems),
        (approvals, _),
    ) = await asyncio.gather(
        _health(request),
        each("/v1/ops/consumers"),
        each("/v1/ops/outbox"),
        each("/v1/ops/dlq", {"limit": str(DEAD_LETTERS_SHOWN)}),
        each("/v1/approvals", {"status": "pending"}),
    )
    lags = lag_rows(consumers)
    return render(
        request,
        "operations.html",
        viewer,
        rows=health,
        lags=lags,
        lag_chart=lag_chart(lags),
        outbox=outbox_rows(outbox),
        dead_letters=dead_letter_rows(dlq),
        approvals=approval_rows(approvals, viewer.sub, viewer.roles),
        problems=sorted(set(c_problems + o_problems + d_problems)),
    )


def _service(name: str) -> str:
    if name not in SERVICES:
        raise ApiError(422, "validation_failed", f"No service {name!r}.")
    return name


@router.post("/operations/dlq/replay", response_class=HTMLResponse)
async def replay(
    request: Request,
    viewer: Operator,
    service: Annotated[str, Form(max_length=40)],
    group: Annotated[str, Form(max_length=200)],
    event_id: Annotated[str, Form(max_length=200)] = "",
    limit: Annotated[int | None, Form(ge=1, le=10_000)] = None,
    confirm: Annotated[bool, Form()] = False,
    csrf: None = CSRF_CHECKED,
) -> Response:
    """A dry run first, shown for confirmation; the confirmed form replays what it showed: the given
    event, or as many of the group's letters not replayed before as the preview counted (letters
    failed since wait for the next replay)."""
    body: dict[str, Any] = {"group": group} | ({"event_ids": [event_id]} if event_id else {})
    body |= {"limit": limit} if limit and not event_id else {}
    service = _service(service)
    if confirm:
        answer = await act(request, viewer, service, "/v1/ops/dlq/replay", body, "")
        if answer is not None:
            n = int(answer.get("replayed") or 0)
            flash(request, "ok", f"Replayed {n} dead letter{'' if n == 1 else 's'} to {group}.")
        return back_to("/operations")
    try:
        answer = await api_for(request, viewer).post(service, "/v1/ops/dlq/replay", body | {"dry_run": True})
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        flash(request, "error", refusal(exc))
        return back_to("/operations")
    preview = replay_preview(answer)
    fields = {"service": service, "group": group, "event_id": event_id}
    fields |= {"limit": str(preview.count)} if not event_id else {}
    return render(request, "operations_replay.html", viewer, preview=preview, fields=fields)


@router.post("/operations/outbox/retry")
async def retry_outbox(
    request: Request,
    viewer: Operator,
    service: Annotated[str, Form(max_length=40)],
    csrf: None = CSRF_CHECKED,
) -> Response:
    service = _service(service)
    answer = await act(request, viewer, service, "/v1/ops/outbox/retry", {}, "")
    if answer is not None:
        n = len(answer.get("retried") or [])
        flash(request, "ok", f"{service}: {n} parked event{'' if n == 1 else 's'} sent back to the relay.")
    return back_to("/operations")


@router.post("/operations/approvals/{service}/{approval_id}/{decision}")
async def decide(
    request: Request,
    service: str,
    approval_id: str,
    decision: str,
    viewer: Operator,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    service = _service(service)
    if decision not in ("approve", "reject"):
        raise ApiError(404, "not_found", "No such decision.")
    body = (
        {"reason": reason.strip()}
        if decision == "reject"
        else ({"note": reason.strip()} if reason.strip() else {})
    )
    path = f"/v1/approvals/{segment(approval_id)}/{decision}"
    await act(request, viewer, service, path, body, f"Approval {approval_id}: {decision}d.")
    return back_to("/operations")

"""Members are told when staff update their ticket: a move or a comment that is not an internal note."""

from __future__ import annotations

import uuid
from typing import Any

from chassis.testing import wait_until
from contracts.topics import Topics
from services.support.tests.integration.conftest import Support


async def test_staff_moves_and_public_comments_notify_the_member_and_nothing_else_does(support: Support):
    member = f"eve-{uuid.uuid4().hex[:8]}"
    opened = await support.open_ticket(
        member, {"category": "redemption_failure", "description": "partner refused my code"}
    )
    ticket_id = opened["ticket_id"]
    agent = support.token("support_agent", "alice")

    async def comment(body: str, headers: dict[str, str], *, internal: bool = False) -> None:
        answer = await support.client.post(
            f"/v1/tickets/{ticket_id}/comments", json={"body": body, "internal": internal}, headers=headers
        )
        assert answer.status_code in (200, 201), answer.text

    await comment("checking with partner", agent, internal=True)
    await comment("We asked the partner to honour your code.", agent)
    await comment("thanks!", support.token("member", member))
    moved = await support.client.post(
        f"/v1/tickets/{ticket_id}/transitions", json={"to": "in_progress"}, headers=agent
    )
    assert moved.status_code == 200, moved.text

    notices: list[dict[str, Any]] = []

    async def moved_notice_published() -> bool:
        nonlocal notices
        notices = await support.events(Topics.DELIVERY_MESSAGE_REQUESTED, ticket_id=ticket_id)
        return any(n["data"]["params"]["status"] == "in progress" for n in notices)

    await wait_until(moved_notice_published, timeout=30, what="the ticket notices")
    assert [(n["data"]["member_id"], n["data"]["notice"], n["data"]["template"]) for n in notices] == [
        (member, "ticket_updated", "ticket_updated")
    ] * 2
    messages = [n["data"]["params"]["message"] for n in notices]
    assert messages == ["We asked the partner to honour your code.", ""]

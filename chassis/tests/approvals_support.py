"""What every service's approval tests check the same way: deciding through HTTP, the audit entries of
an approval and the events announcing it on the real broker."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx

from chassis.testing import read_topic, wait_until
from contracts.topics import Topics


async def decide(
    http: httpx.AsyncClient, approval_id: str, verb: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await http.post(f"/v1/approvals/{approval_id}/{verb}", json=body or None, headers=headers)


async def pending_ids(http: httpx.AsyncClient, headers: dict[str, str], kind: str) -> list[str]:
    answer = await http.get("/v1/approvals", params={"status": "pending", "kind": kind}, headers=headers)
    assert answer.status_code == 200, answer.text
    return [item["approval_id"] for item in answer.json()["items"]]


async def audited(pool: asyncpg.Pool, approval_id: str) -> list[tuple[str, str]]:
    """(action, actor) of the approval's audit entries, in chain order."""
    rows = await pool.fetch(
        "SELECT action, actor FROM audit_log"
        " WHERE subject_type = 'approval' AND subject_id = $1 ORDER BY seq",
        approval_id,
    )
    return [(r["action"], r["actor"]) for r in rows]


async def announced(bootstrap: str, approval_id: str, *, decisions: int) -> list[tuple[str, str | None]]:
    """(topic, decision) of the events about the approval, once its request and `decisions` are there."""
    found: list[tuple[str, str | None]] = []

    async def arrived() -> bool:
        found.clear()
        for topic in (Topics.APPROVAL_REQUESTED, Topics.APPROVAL_DECIDED):
            for record in await read_topic(bootstrap, topic):
                data = json.loads(record.value)["data"]
                if data["approval_id"] == approval_id:
                    found.append((str(topic), data.get("decision")))
        return len(found) >= 1 + decisions

    await wait_until(arrived, what=f"the events of approval {approval_id}")
    return found

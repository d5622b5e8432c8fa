"""HTTP in for looking after an offer: read one, edit its terms, pause, resume and end it. Partners manage
their own offers (another partner's is as invisible as a missing one); admin and ops manage any."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict

from chassis.auth import STAFF_ROLES, Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import Identifier, Name, PositiveInt32, Text
from chassis.problems import Problem
from services.redemption.catalogue_api import Catalogue, add_catalogue_routes, field_problem, refuse_cleared
from services.redemption.lifecycle import CatalogueStatus, LifecycleAction
from services.redemption.offers import domain
from services.redemption.offers import repository as repo
from services.redemption.offers.api import OFFER_MANAGERS, UNKNOWN_OFFER, offer_view
from services.redemption.views import OfferOut

router = APIRouter(tags=["offers"])


class OfferChangesIn(BaseModel):
    """The terms that can change; a field left out stays, `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    title: Name | None = None
    description: Text | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    eligible_tiers: list[Identifier] | None = None
    eligible_segments: list[Identifier] | None = None
    limit_per_member: PositiveInt32 | None = None
    total_cap: PositiveInt32 | None = None


REQUIRED = ("title", "valid_from", "valid_until", "eligible_tiers", "eligible_segments")


def _visible(offer: domain.Offer | None, principal: Principal, offer_id: str) -> domain.Offer:
    if offer is None or (not principal.has_any_role(STAFF_ROLES) and offer.partner_id != principal.sub):
        raise Problem(404, UNKNOWN_OFFER, detail=f"No offer {offer_id}.")
    return offer


async def _locked(conn: Connection, principal: Principal, offer_id: str) -> domain.Offer:
    return _visible(await repo.lock_offer(conn, offer_id), principal, offer_id)


def _edited(offer: domain.Offer, changes: dict[str, Any]) -> domain.Offer:
    refuse_cleared(changes, REQUIRED)
    for name in ("valid_from", "valid_until"):
        if changes.get(name) is not None:
            changes[name] = changes[name].astimezone(UTC)
    for name in ("eligible_tiers", "eligible_segments"):
        if name in changes:
            changes[name] = tuple(changes[name])
    edited = replace(offer, **changes)
    if edited.valid_until <= edited.valid_from:
        raise field_problem("valid_until", "window", "valid_until must be after valid_from")
    if edited.total_cap is not None and edited.total_cap < offer.used:
        raise field_problem(
            "total_cap", "below_redeemed", f"{offer.used} redemptions already hold a slot", status=409
        )
    return edited


@router.get("/v1/offers/{offer_id}", response_model=OfferOut)
async def get_offer(
    offer_id: Identifier,
    principal: Annotated[Principal, Depends(require_roles(*Role))],
    pool: DbPool,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        offer = await repo.get_offer(conn, offer_id)
    if Role.MEMBER in principal.roles and not principal.has_any_role((*STAFF_ROLES, Role.PARTNER)):
        # Members see the offers they could redeem now, as in the list.
        open_now = offer is not None and offer.is_open_at(datetime.now(UTC))
        if offer is None or offer.status is not CatalogueStatus.ACTIVE or not open_now:
            raise Problem(404, UNKNOWN_OFFER, detail=f"No offer {offer_id}.")
        return offer_view(offer)
    return offer_view(_visible(offer, principal, offer_id))


def _terms(offer: domain.Offer) -> dict[str, Any]:
    view = offer_view(offer)
    return {k: view[k] for k in (*REQUIRED, "description", "limit_per_member", "total_cap")}


add_catalogue_routes(
    router,
    Catalogue[domain.Offer](
        kind="offer",
        lock=_locked,
        with_status=lambda offer, status: replace(offer, status=status),
        edited=_edited,
        save=repo.update_offer,
        view=offer_view,
        terms=_terms,
    ),
    collection="offers",
    managers=OFFER_MANAGERS,
    response_model=OfferOut,
    changes=OfferChangesIn,
    descriptions={
        "edit": (
            "Change an offer's terms (not its partner or validation method); an ended offer stays as it was."
        ),
        LifecycleAction.PAUSE: (
            "Hold an offer: redemptions are refused (`offer_paused`, recorded) until it is resumed."
        ),
        LifecycleAction.END: (
            "End an offer for good: redemptions are refused (`offer_ended`), it can no longer be edited."
        ),
    },
)

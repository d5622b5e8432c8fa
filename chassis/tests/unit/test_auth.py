"""Bearer tokens: who may call what, and the problem answers for everyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from fastapi import APIRouter, Depends

from chassis.auth import Principal, Role, issue_token, require_roles, verify_token
from chassis.http import create_http_app
from chassis.settings import Settings

SECRET = "unit-test-secret-long-enough-for-hs256"
SETTINGS = Settings(ORCHARD_SERVICE="wallet", ORCHARD_JWT_SECRET=SECRET, ORCHARD_JWT_ISSUER="unit")


def build_app() -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/v1/campaigns")
    async def create_campaign(
        principal: Principal = Depends(require_roles(Role.ADMIN, Role.OPS)),
    ) -> dict[str, str]:
        return {"created_by": principal.sub}

    @router.get("/v1/wallet/transactions")
    async def transactions(_: Principal = Depends(require_roles("finance", "auditor"))) -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/v1/members/{member_id}/wallet")
    async def wallet(
        member_id: str, principal: Principal = Depends(require_roles(Role.MEMBER, Role.SUPPORT_AGENT))
    ) -> dict[str, str]:
        principal.ensure_may_access_member(member_id)
        return {"member_id": member_id}

    app = create_http_app(SETTINGS, title="auth test", readiness_checks={}, routers=[router])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with build_app() as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(role: str | list[str], sub: str = "user-1", **kwargs: int) -> str:
    return issue_token(role=role, sub=sub, settings=SETTINGS, **kwargs)


def test_an_issued_token_names_its_subject_and_roles() -> None:
    principal = verify_token(token(["ops", "finance"], sub="alice"), SETTINGS)

    assert principal == Principal(sub="alice", roles=frozenset({Role.OPS, Role.FINANCE}))


def test_issued_tokens_carry_issuer_issued_at_and_expiry() -> None:
    claims = jwt.decode(token("admin", ttl_seconds=60), SECRET, algorithms=["HS256"], issuer="unit")

    assert claims["exp"] - claims["iat"] == 60
    assert claims["roles"] == ["admin"]


@pytest.mark.parametrize("role", ["root", "", "Admin"])
def test_issuing_a_token_for_an_unknown_role_is_refused(role: str) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        token(role)


def test_issuing_a_token_without_roles_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        token([])


def test_a_route_must_name_the_roles_it_admits() -> None:
    with pytest.raises(ValueError, match="none are implied"):
        require_roles()


async def test_an_admitted_role_reaches_the_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/campaigns", headers=bearer(token("ops", sub="olivia")))

    assert response.status_code == 200
    assert response.json() == {"created_by": "olivia"}


async def test_member_token_is_refused_on_admin_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/campaigns", headers=bearer(token("member", sub="m-1")))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "forbidden"
    assert "admin, ops" in response.json()["detail"]


async def test_admin_is_not_admitted_where_the_route_does_not_name_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/wallet/transactions", headers=bearer(token("admin")))

    assert response.status_code == 403


async def test_a_request_without_a_token_gets_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/campaigns")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"


async def test_an_expired_token_gets_401(client: httpx.AsyncClient) -> None:
    expired = token("admin", ttl_seconds=-60)

    response = await client.post("/v1/campaigns", headers=bearer(expired))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["code"] == "invalid_token"
    assert "expired" in response.json()["detail"]


async def test_a_token_with_a_tampered_signature_gets_401(client: httpx.AsyncClient) -> None:
    header, payload, signature = token("admin").split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"

    response = await client.post("/v1/campaigns", headers=bearer(tampered))

    assert response.status_code == 401


async def test_a_token_whose_roles_were_rewritten_gets_401(client: httpx.AsyncClient) -> None:
    member = token("member")
    forged_payload = jwt.encode(
        {**jwt.decode(member, options={"verify_signature": False}), "roles": ["admin"]},
        "a-forger-guessing-some-32-byte-key",
        algorithm="HS256",
    ).split(".")[1]
    header, _, signature = member.split(".")

    response = await client.post("/v1/campaigns", headers=bearer(f"{header}.{forged_payload}.{signature}"))

    assert response.status_code == 401


async def test_a_token_signed_with_another_secret_gets_401(client: httpx.AsyncClient) -> None:
    foreign = issue_token(
        role="admin",
        sub="x",
        settings=Settings(
            ORCHARD_JWT_SECRET="another-secret-long-enough-for-hs256", ORCHARD_JWT_ISSUER="unit"
        ),
    )

    response = await client.post("/v1/campaigns", headers=bearer(foreign))

    assert response.status_code == 401


async def test_a_token_from_another_issuer_gets_401(client: httpx.AsyncClient) -> None:
    foreign = issue_token(
        role="admin",
        sub="x",
        settings=Settings(ORCHARD_JWT_SECRET=SECRET, ORCHARD_JWT_ISSUER="elsewhere"),
    )

    response = await client.post("/v1/campaigns", headers=bearer(foreign))

    assert response.status_code == 401


async def test_an_unsigned_token_gets_401(client: httpx.AsyncClient) -> None:
    unsigned = jwt.encode(
        {"sub": "x", "roles": ["admin"], "iss": "unit", "iat": 0, "exp": 2**40}, key="", algorithm="none"
    )

    response = await client.post("/v1/campaigns", headers=bearer(unsigned))

    assert response.status_code == 401


async def test_a_basic_auth_header_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/campaigns", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


async def test_a_member_sees_their_own_wallet_only(client: httpx.AsyncClient) -> None:
    own = await client.get("/v1/members/m-1/wallet", headers=bearer(token("member", sub="m-1")))
    other = await client.get("/v1/members/m-2/wallet", headers=bearer(token("member", sub="m-1")))

    assert own.status_code == 200
    assert other.status_code == 403


async def test_a_support_agent_sees_any_members_wallet(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/members/m-2/wallet", headers=bearer(token("support_agent")))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("roles", "member_id", "allowed"),
    [
        ({Role.MEMBER}, "m-1", True),
        ({Role.MEMBER}, "m-2", False),
        ({Role.PARTNER}, "m-1", False),
        ({Role.HRIS}, "m-1", False),
        ({Role.AUDITOR}, "m-2", True),
        ({Role.FINANCE}, "m-2", True),
    ],
)
def test_member_data_is_open_to_its_member_and_to_staff(
    roles: set[Role], member_id: str, allowed: bool
) -> None:
    assert Principal(sub="m-1", roles=frozenset(roles)).may_access_member(member_id) is allowed


def test_roles_this_version_does_not_know_are_ignored() -> None:
    future = jwt.encode(
        {"sub": "x", "roles": ["ops", "robot"], "iss": "unit", "iat": 0, "exp": 2**40},
        SECRET,
        algorithm="HS256",
    )

    assert verify_token(future, SETTINGS).roles == frozenset({Role.OPS})


def test_a_caller_is_named_by_its_widest_role_in_every_service() -> None:
    def actor(*roles: Role) -> str:
        return Principal(sub="kim", roles=frozenset(roles)).actor

    assert actor(Role.OPS, Role.ADMIN) == "admin:kim"
    assert actor(Role.AUDITOR, Role.FINANCE) == "finance:kim"  # not the first alphabetically
    assert actor(Role.HRIS, Role.OPS) == "ops:kim"
    assert actor(Role.APPROVER, Role.OPS) == "ops:kim", "approving is a permission beside the job"
    assert actor(Role.APPROVER) == "approver:kim"
    assert actor(Role.MEMBER) == "member:kim"
    assert actor() == "unknown:kim"

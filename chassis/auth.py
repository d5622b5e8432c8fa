"""Bearer JWT authentication and explicit role checks for HTTP routes.

Tokens carry `sub`, `roles` (a list), `iss`, `iat` and `exp`. A member token's `sub` is the member id,
a partner token's `sub` the partner id. No role implies another: every route names the roles it
admits, `admin` included.

Two kinds of token are accepted (DESIGN.md §5 "Identity"):
- the identity provider's (`ORCHARD_OIDC_ISSUER`): RS256 or EdDSA, verified with the provider's JWKS
  (fetched once, fetched again when a token names a `kid` not seen yet, at most every few seconds), and
  naming `ORCHARD_OIDC_AUDIENCE` in `aud`. Roles come from `roles`, else Keycloak's `realm_access.roles`;
- shared-secret HS256 tokens (`orchard token`, `issue_token`): in development always, outside it only
  while no issuer is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chassis.problems import Problem
from chassis.settings import Settings

ALGORITHM: Final = "HS256"
PROVIDER_ALGORITHMS: Final = frozenset({"RS256", "EdDSA"})
# Tolerated clock difference between the issuer and this service for `exp` and `iat`.
CLOCK_SKEW_S: Final = 10


class Role(StrEnum):
    ADMIN = "admin"
    OPS = "ops"
    FINANCE = "finance"
    SUPPORT_AGENT = "support_agent"
    AUDITOR = "auditor"
    MEMBER = "member"
    PARTNER = "partner"
    HRIS = "hris"
    # A permission rather than a job: held beside another role, it lets a person approve another
    # person's action that waits for a second pair of eyes (chassis/approvals.py).
    APPROVER = "approver"


ACTOR_PRECEDENCE: Final = (
    Role.ADMIN,
    Role.OPS,
    Role.FINANCE,
    Role.SUPPORT_AGENT,
    Role.AUDITOR,
    Role.HRIS,
    Role.PARTNER,
    Role.MEMBER,
    Role.APPROVER,  # a permission beside a job: the job names the person (approvals name it apart)
)
"""Which of a caller's roles names it as an actor: the widest first."""

# Staff may look at any member's data; members only at their own, partners and HR systems at none.
STAFF_ROLES: Final = frozenset({Role.ADMIN, Role.OPS, Role.FINANCE, Role.SUPPORT_AGENT, Role.AUDITOR})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and the roles it was granted."""

    sub: str
    roles: frozenset[Role]

    @property
    def actor(self) -> str:
        """How audit entries, events and approvals name the caller, e.g. `ops:alice`: the first of its
        roles in `ACTOR_PRECEDENCE`, the same in every service."""
        role = next((r for r in ACTOR_PRECEDENCE if r in self.roles), None)
        return f"{role.value if role else 'unknown'}:{self.sub}"

    def has_any_role(self, roles: Iterable[Role]) -> bool:
        return not self.roles.isdisjoint(roles)

    def may_access_member(self, member_id: str) -> bool:
        if self.has_any_role(STAFF_ROLES):
            return True
        return Role.MEMBER in self.roles and self.sub == member_id

    def ensure_may_access_member(self, member_id: str) -> None:
        """Raise a 403 problem unless `may_access_member(member_id)`."""
        if not self.may_access_member(member_id):
            raise Problem(403, "forbidden", detail="This token may not access that member's data.")


def _parse_roles(role: str | Sequence[str]) -> list[Role]:
    names = [role] if isinstance(role, str) else list(role)
    if not names:
        raise ValueError("a token needs at least one role")
    unknown = sorted(set(names) - set(Role))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(Role)}")
    return [Role(name) for name in dict.fromkeys(names)]


def issue_token(
    *,
    role: str | Sequence[str],
    sub: str,
    settings: Settings | None = None,
    ttl_seconds: int = 86400,
) -> str:
    """A signed token for `sub` with the given role(s). A non-positive TTL gives an expired token."""
    settings = settings or Settings()
    if not sub:
        raise ValueError("a token needs a subject")
    now = int(time.time())
    claims = {
        "sub": sub,
        "roles": [str(r) for r in _parse_roles(role)],
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


class InvalidToken(Exception):
    """The token is malformed, wrongly signed, expired, from another issuer or lacks claims."""


def verify_token(token: str, settings: Settings) -> Principal:
    """The principal of a valid token; `InvalidToken` otherwise.

    Roles this version does not know are ignored rather than refused, so a token minted by a newer
    issuer keeps working for the roles both sides understand.
    """
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("the token is not valid") from exc
    if algorithm == ALGORITHM:
        if settings.oidc_issuer and not settings.is_dev:
            raise InvalidToken(
                "shared-secret tokens are not accepted here; sign in with the identity provider"
            )
        claims = _decode(
            token, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM, issuer=settings.jwt_issuer
        )
    elif settings.oidc_issuer and algorithm in PROVIDER_ALGORITHMS:
        claims = _decode_provider_token(token, str(algorithm), settings.oidc_issuer, settings)
    else:
        raise InvalidToken("the token is not valid")
    sub = claims["sub"]
    roles = claims.get("roles")
    if roles is None and isinstance(realm_access := claims.get("realm_access"), dict):
        roles = realm_access.get("roles", [])
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("the token's subject is not valid")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("the token's roles claim is not a list of role names")
    return Principal(sub=sub, roles=frozenset(Role(r) for r in roles if r in set(Role)))


def _decode(
    token: str, key: Any, *, algorithm: str, issuer: str, audience: str | None = None
) -> dict[str, Any]:
    required = ["sub", "iss", "iat", "exp"] + (["aud"] if audience else ["roles"])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            leeway=CLOCK_SKEW_S,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("the token is not meant for Orchard (aud)") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("the token is not valid") from exc
    return claims


def _decode_provider_token(token: str, algorithm: str, issuer: str, settings: Settings) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token).get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the token names no signing key (kid)")
    key = provider_keys(issuer, settings.oidc_jwks_url).key(kid, algorithm)
    return _decode(token, key, algorithm=algorithm, issuer=issuer, audience=settings.oidc_audience)


class ProviderKeys:
    """An identity provider's signing keys by `kid`, from its JWKS.

    Fetched on first use and again when a token names a `kid` not in the set (the provider rotated its
    keys), but at most once per `refresh_interval_s`, so tokens with made-up kids cannot make every
    request fetch. Keys older than `max_age_s` are fetched again, so a withdrawn key stops working.
    """

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None = None,
        *,
        refresh_interval_s: float = 5.0,
        max_age_s: float = 3600.0,
        timeout_s: float = 3.0,
    ) -> None:
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._refresh_interval_s = refresh_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str, algorithm: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at > self._max_age_s
            if (kid not in self._keys or stale) and now - self._attempted_at >= self._refresh_interval_s:
                self._attempted_at = now
                self._refresh(now)
            found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("the token was signed with a key the identity provider does not publish")
        if found.algorithm_name != algorithm:
            raise InvalidToken("the token's algorithm does not match its signing key")
        return found

    def _refresh(self, now: float) -> None:
        try:
            with httpx.Client(timeout=self._timeout_s) as client:
                url = self._jwks_url or self._discover(client)
                response = client.get(url)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            if now - self._fetched_at > self._max_age_s:
                self._keys = {}
            raise InvalidToken("the identity provider's keys could not be fetched") from exc
        self._keys = {
            key.key_id: key
            for key in keys
            if key.key_id
            and key.algorithm_name in PROVIDER_ALGORITHMS
            and key.public_key_use in (None, "sig")
        }
        self._fetched_at = now

    def _discover(self, client: httpx.Client) -> str:
        response = client.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self.issuer or not isinstance(document.get("jwks_uri"), str):
            raise ValueError("the discovery document names another issuer or no jwks_uri")
        jwks_uri: str = document["jwks_uri"]
        return jwks_uri


_provider_keys: dict[tuple[str, str | None], ProviderKeys] = {}
_provider_keys_lock = threading.Lock()


def provider_keys(issuer: str, jwks_url: str | None = None) -> ProviderKeys:
    """The process-wide key cache of one provider."""
    with _provider_keys_lock:
        found = _provider_keys.get((issuer, jwks_url))
        if found is None:
            found = _provider_keys[(issuer, jwks_url)] = ProviderKeys(issuer, jwks_url)
        return found


def _unauthenticated(detail: str, *, invalid: bool) -> Problem:
    # RFC 6750 §3: a missing token gets a bare challenge, a bad one says why in `error`.
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return Problem(
        401,
        "invalid_token" if invalid else "unauthenticated",
        detail=detail,
        headers={"WWW-Authenticate": challenge},
    )


_bearer = HTTPBearer(auto_error=False, description="A JWT from `orchard token --role ROLE`")

# Set on every dependency `require_roles` makes, so the HTTP layer can tell, before reading a request's
# body, that its route needs a token (see `chassis.http.BodyGuardMiddleware`).
REQUIRES_TOKEN_ATTR: Final = "__orchard_requires_token__"
ADMITTED_ROLES_ATTR: Final = "__orchard_admitted_roles__"
"""The roles a `require_roles` dependency admits, for documentation and tests that read the routes."""


def requires_token(call: object) -> bool:
    """Whether `call` is a dependency made by `require_roles`."""
    return getattr(call, REQUIRES_TOKEN_ATTR, False) is True


def authenticate(scheme: str | None, token: str | None, settings: Settings) -> Principal:
    """The principal of a bearer token, or a 401 problem when it is missing or not valid."""
    if not scheme or not token or scheme.lower() != "bearer":
        raise _unauthenticated("A bearer token is required.", invalid=False)
    try:
        return verify_token(token, settings)
    except InvalidToken as exc:
        raise _unauthenticated(f"{str(exc).capitalize()}.", invalid=True) from exc


def require_roles(*roles: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency admitting callers holding any of `roles`; it returns their `Principal`.

    Missing, malformed, expired or wrongly signed tokens get 401 with `WWW-Authenticate: Bearer`;
    valid tokens without an admitted role get 403. The app's settings come from `app.state.settings`
    (set by `create_http_app`).
    """
    if not roles:
        raise ValueError("require_roles needs the roles a route admits; none are implied")
    admitted = frozenset(_parse_roles([str(r) for r in roles]))
    admitted_names = ", ".join(sorted(admitted))

    async def authorise(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        settings: Settings = request.app.state.settings
        principal = authenticate(
            credentials.scheme if credentials is not None else None,
            credentials.credentials if credentials is not None else None,
            settings,
        )
        if not principal.has_any_role(admitted):
            raise Problem(
                403, "forbidden", detail=f"This action requires one of the roles: {admitted_names}."
            )
        return principal

    setattr(authorise, REQUIRES_TOKEN_ATTR, True)
    setattr(authorise, ADMITTED_ROLES_ATTR, frozenset(str(role) for role in admitted))
    return authorise

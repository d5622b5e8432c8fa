"""Tokens of the identity provider: verified by its JWKS, naming Orchard in `aud`, keys rotating by
`kid`; and shared-secret tokens refused outside development once an issuer is set."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from chassis.auth import InvalidToken, ProviderKeys, Role, issue_token, verify_token
from chassis.settings import Settings

SECRET = "unit-test-secret-long-enough-for-hs256-tokens"


@dataclass
class Provider:
    """A stand-in identity provider on loopback: a discovery document and a JWKS that can change."""

    issuer: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    jwks_fetches: int = 0

    def add_key(self, kid: str, algorithm: str) -> Any:
        private = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if algorithm == "RS256"
            else ed25519.Ed25519PrivateKey.generate()
        )
        algo = jwt.get_algorithm_by_name(algorithm)
        public = json.loads(algo.to_jwk(private.public_key()))
        self.keys[kid] = {**public, "kid": kid, "alg": algorithm, "use": "sig"}
        return private

    def token(self, private: Any, kid: str, algorithm: str, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": "user-7", "iss": self.issuer, "aud": ["orchard", "account"], "iat": now,
                "exp": now + 300, "roles": ["ops", "offline_access"]} | claims  # fmt: skip
        return jwt.encode(body, private, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/.well-known/openid-configuration"):
                body = {"issuer": state.issuer, "jwks_uri": state.issuer + "/certs"}
            elif self.path.endswith("/certs"):
                state.jwks_fetches += 1
                body = {"keys": list(state.keys.values())}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/orchard"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


def settings(provider: Provider, env: str = "dev") -> Settings:
    return Settings(
        ORCHARD_ENV=env, ORCHARD_JWT_SECRET=SECRET, ORCHARD_OIDC_ISSUER=provider.issuer,
        ORCHARD_OIDC_AUDIENCE="orchard",
    )  # fmt: skip


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_a_provider_token_is_verified_by_its_jwks(provider: Provider, algorithm: str) -> None:
    private = provider.add_key("k1", algorithm)
    principal = verify_token(provider.token(private, "k1", algorithm), settings(provider))
    assert principal.sub == "user-7"
    assert principal.roles == frozenset({Role.OPS})


def test_keycloak_realm_roles_are_read_when_there_is_no_roles_claim(provider: Provider) -> None:
    private = provider.add_key("k1", "RS256")
    token = provider.token(private, "k1", "RS256", roles=None, realm_access={"roles": ["finance"]})
    token = jwt.encode(
        {k: v for k, v in jwt.decode(token, options={"verify_signature": False}).items() if k != "roles"},
        private, algorithm="RS256", headers={"kid": "k1"},
    )  # fmt: skip
    assert verify_token(token, settings(provider)).roles == frozenset({Role.FINANCE})


def test_a_token_for_another_audience_is_refused(provider: Provider) -> None:
    private = provider.add_key("k1", "RS256")
    with pytest.raises(InvalidToken, match="aud"):
        verify_token(provider.token(private, "k1", "RS256", aud="someone-else"), settings(provider))


def test_an_expired_provider_token_is_refused(provider: Provider) -> None:
    private = provider.add_key("k1", "RS256")
    stale = provider.token(private, "k1", "RS256", iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(stale, settings(provider))


def test_a_token_signed_by_a_key_the_provider_does_not_publish_is_refused(provider: Provider) -> None:
    provider.add_key("k1", "RS256")
    impostor = Provider(issuer=provider.issuer)
    forged = impostor.token(impostor.add_key("k1", "RS256"), "k1", "RS256")
    with pytest.raises(InvalidToken):
        verify_token(forged, settings(provider))


def test_a_rotated_key_is_fetched_when_a_token_names_its_kid(provider: Provider) -> None:
    keys = ProviderKeys(provider.issuer, refresh_interval_s=0)
    first = provider.add_key("k1", "RS256")
    keys.key("k1", "RS256")
    second = provider.add_key("k2", "RS256")
    assert keys.key("k2", "RS256").key_id == "k2"
    assert provider.jwks_fetches == 2
    del first, second


def test_made_up_kids_do_not_make_every_request_fetch_the_keys(provider: Provider) -> None:
    keys = ProviderKeys(provider.issuer, refresh_interval_s=60)
    provider.add_key("k1", "RS256")
    keys.key("k1", "RS256")
    for n in range(5):
        with pytest.raises(InvalidToken):
            keys.key(f"made-up-{n}", "RS256")
    assert provider.jwks_fetches == 1


def test_shared_secret_tokens_keep_working_in_development_beside_the_provider(provider: Provider) -> None:
    dev = settings(provider)
    token = issue_token(role="admin", sub="dev-admin", settings=dev)
    assert verify_token(token, dev).roles == frozenset({Role.ADMIN})


def test_outside_development_shared_secret_tokens_are_refused_once_an_issuer_is_set(
    provider: Provider,
) -> None:
    production = settings(provider, env="production")
    token = issue_token(role="admin", sub="someone", settings=production)
    with pytest.raises(InvalidToken, match="identity provider"):
        verify_token(token, production)


def test_a_plain_http_issuer_is_refused_outside_development(provider: Provider) -> None:
    refusals = settings(provider, env="production").startup_refusals()
    assert any(line.startswith("ORCHARD_OIDC_ISSUER=") for line in refusals)

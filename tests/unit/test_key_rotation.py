"""Supabase Auth's key rotation: the legacy HS256 secret and the project's JWKS at once.

Tokens are shaped exactly as Supabase Auth issues them (ES256 with a `kid`, `iss` =
`<project>/auth/v1`, `aud` and `role` "authenticated", the clinic under `app_metadata`, no
`nbf`), and the keys are served by a real HTTP server at `/auth/v1/.well-known/jwks.json`
that counts its fetches and whose keys a test can rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from clinic_backups.domain.errors import InvalidToken
from clinic_backups.domain.models import Clinic, Role
from clinic_backups.edge.auth import authenticate, verify_token
from clinic_backups.wiring.settings import CommonSettings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import JWT_SECRET, JsonServer

TENANT_CLAIM = "app_metadata.tenant"
ROLE_CLAIM = "app_metadata.clinic_role"


class Tenants:
    def get(self, schema: str) -> Clinic | None:
        return Clinic(schema, "Clínica Norte", True) if schema == "clinica_norte" else None

    def active_clinics(self) -> list[Clinic]:
        return [Clinic("clinica_norte", "Clínica Norte", True)]

    def unsupported_clinics(self) -> list[str]:
        return []


class SupabaseAuth:
    """A project's Auth as far as tokens go: its issuer, its legacy secret and its JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.http = JsonServer(
            lambda path: self.jwks() if path == "/auth/v1/.well-known/jwks.json" else None
        )
        self.project = self.http.base_url
        self.issuer = f"{self.project}/auth/v1"
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"

    @property
    def fetches(self) -> int:
        return self.http.fetches

    def add_key(self) -> str:
        kid = str(uuid.uuid4())
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            # As Supabase publishes them: alg, kid, key_ops verify, ext true.
            jwk.update({"alg": "ES256", "kid": kid, "key_ops": ["verify"], "ext": True})
            keys.append(jwk)
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": str(uuid.uuid4()),
            "aud": "authenticated",
            "exp": now + 3600,
            "iat": now,
            "email": "direccion@norte.es",
            "phone": "",
            "app_metadata": {
                "provider": "email",
                "providers": ["email"],
                "tenant": "clinica_norte",
                "clinic_role": "admin",
            },
            "user_metadata": {"email_verified": True},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        claims.update(overrides)
        return claims

    def es256(self, kid: str, key: Any = None, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides),
            key or self.keys[kid],
            algorithm="ES256",
            headers={"kid": kid, "typ": "JWT"},
        )

    def hs256(self, **overrides: Any) -> str:
        # The legacy secret's tokens carry no kid.
        return jwt.encode(self.claims(**overrides), JWT_SECRET, algorithm="HS256")

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def auth() -> Iterator[SupabaseAuth]:
    server = SupabaseAuth()
    server.add_key()
    yield server
    server.close()


def settings_for(auth: SupabaseAuth, **overrides: Any) -> CommonSettings:
    values: dict[str, Any] = {
        "database_url": "postgresql://unused",
        "jwt_secret": JWT_SECRET,
        "jwt_jwks_url": auth.jwks_url,
        "jwt_algorithms": "HS256,ES256",
        # Written with a trailing slash, as an operator copies it from the dashboard.
        "jwt_issuer": auth.issuer + "/",
        "jwt_audience": "authenticated",
        "tenant_claim": TENANT_CLAIM,
        "role_claim": ROLE_CLAIM,
    }
    values.update(overrides)
    return CommonSettings.model_validate(values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_during_a_rotation_both_the_legacy_secret_and_the_jwks_sign_in(auth: SupabaseAuth) -> None:
    settings = settings_for(auth)
    (kid,) = auth.keys
    for token in (auth.es256(kid), auth.hs256()):
        ctx = authenticate(bearer(token), settings, Tenants())
        assert (ctx.schema, ctx.role, ctx.user_name) == (
            "clinica_norte",
            Role.ADMIN,
            "direccion@norte.es",
        )


def test_issuers_match_with_or_without_a_trailing_slash(auth: SupabaseAuth) -> None:
    (kid,) = auth.keys
    for configured in (auth.issuer, auth.issuer + "/"):
        for issued in (auth.issuer, auth.issuer + "/"):
            settings = settings_for(auth, jwt_issuer=configured)
            assert verify_token(auth.es256(kid, iss=issued), settings)["iss"] == issued
    with pytest.raises(InvalidToken):
        verify_token(auth.es256(kid, iss=auth.project + "/auth/v2"), settings_for(auth))


def test_a_new_kid_is_fetched_at_once_after_the_refresh_interval(auth: SupabaseAuth) -> None:
    # Given a container that fetched the keys for its first token
    settings = settings_for(auth, jwt_jwks_refresh_seconds=0.2)
    (old,) = auth.keys
    verify_token(auth.es256(old), settings)
    assert auth.fetches == 1
    # When the project rotates to a new signing key and a token signed by it arrives
    new = auth.add_key()
    time.sleep(0.25)
    # Then the JWKS is fetched again at once (PyJWT's default refuses a new kid for 30 s)
    assert verify_token(auth.es256(new), settings)["role"] == "authenticated"
    assert auth.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(auth: SupabaseAuth) -> None:
    settings = settings_for(auth, jwt_jwks_refresh_seconds=3600)
    (kid,) = auth.keys
    verify_token(auth.es256(kid), settings)
    assert auth.fetches == 1
    # A flood of tokens with made-up kids does not turn into a flood of fetches.
    stranger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verify_token(auth.es256(str(uuid.uuid4()), key=stranger), settings)
    assert auth.fetches == 1


def test_a_revoked_key_stops_verifying_when_the_keys_are_fetched_again(auth: SupabaseAuth) -> None:
    settings = settings_for(auth, jwt_jwks_refresh_seconds=0.2, jwt_jwks_cache_seconds=0.2)
    (old,) = auth.keys
    token = auth.es256(old)
    verify_token(token, settings)
    # The project revokes the old key (after moving to a new one).
    auth.add_key()
    signer = auth.keys.pop(old)
    time.sleep(0.25)
    with pytest.raises(InvalidToken):
        verify_token(auth.es256(old, key=signer), settings)


def test_an_hs_token_never_meets_a_jwks_key_nor_an_es_token_the_secret(
    auth: SupabaseAuth,
) -> None:
    settings = settings_for(auth)
    (kid,) = auth.keys
    public_pem = (
        auth.keys[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # HS256 signed with the JWKS key's public bytes, naming that key's kid: refused.
    confused = _hmac_token(auth.claims(), public_pem, {"alg": "HS256", "kid": kid, "typ": "JWT"})
    with pytest.raises(InvalidToken):
        verify_token(confused, settings)
    # An ES256 token whose kid is not in the JWKS never falls back to the secret.
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken):
        verify_token(auth.es256("legacy", key=stranger), settings)
    # An asymmetric token without a kid is refused too.
    no_kid = jwt.encode(auth.claims(), auth.keys[kid], algorithm="ES256")
    with pytest.raises(InvalidToken):
        verify_token(no_kid, settings)


def _hmac_token(claims: dict[str, Any], secret: bytes, header: dict[str, Any]) -> str:
    # By hand: PyJWT itself refuses a PEM as an HMAC secret.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def test_a_jwks_key_must_fit_the_token_s_algorithm(auth: SupabaseAuth) -> None:
    # An ES384 token naming the ES256 key's kid: the key's declared alg decides, not the header.
    settings = settings_for(auth, jwt_algorithms="HS256,ES256,ES384")
    (kid,) = auth.keys
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(auth.claims(), p384, algorithm="ES384", headers={"kid": kid})
    with pytest.raises(InvalidToken):
        verify_token(token, settings)


def test_settings_need_a_key_source_for_every_algorithm() -> None:
    base = {
        "database_url": "postgresql://unused",
        "jwt_issuer": "https://x.supabase.co/auth/v1",
        "jwt_audience": "authenticated",
    }
    with pytest.raises(ValueError):  # ES256 without a JWKS
        CommonSettings.model_validate({**base, "jwt_secret": "s", "jwt_algorithms": "HS256,ES256"})
    with pytest.raises(ValueError):  # HS256 without a secret
        CommonSettings.model_validate(
            {**base, "jwt_jwks_url": "http://x/jwks", "jwt_algorithms": "HS256,ES256"}
        )
    both = CommonSettings.model_validate(
        {
            **base,
            "jwt_secret": "s",
            "jwt_jwks_url": "http://x/jwks",
            "jwt_algorithms": "HS256,ES256",
        }
    )
    assert both.jwt_algorithms == ["HS256", "ES256"]

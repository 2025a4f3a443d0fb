"""Token verification and tenant context: what gets a caller in, and what never does."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from clinic_backups.domain.errors import (
    ClinicNotAvailable,
    Forbidden,
    InvalidToken,
    MissingToken,
    TokenExpired,
)
from clinic_backups.domain.models import Clinic, Permission, Role
from clinic_backups.edge.auth import authenticate, bearer_token, claim, verify_token
from clinic_backups.wiring.settings import CommonSettings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.helpers import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, JsonServer, mint


class Tenants:
    def __init__(self, *clinics: Clinic):
        self.clinics = {c.schema: c for c in clinics}

    def get(self, schema: str) -> Clinic | None:
        return self.clinics.get(schema)

    def active_clinics(self) -> list[Clinic]:
        return [c for c in self.clinics.values() if c.active]

    def unsupported_clinics(self) -> list[str]:
        return []


TENANTS = Tenants(
    Clinic("clinica_norte", "Clínica Norte", True),
    Clinic("clinica_cerrada", "Clínica Cerrada", False),
    Clinic("Clinica_Norte", "Otra clínica con mayúsculas", True),
)


def hs_settings(**overrides: Any) -> CommonSettings:
    values = dict(
        database_url="postgresql://unused",
        jwt_secret=JWT_SECRET,
        jwt_issuer=JWT_ISSUER,
        jwt_audience=JWT_AUDIENCE,
    )
    values.update(overrides)
    return CommonSettings.model_validate(values)


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_admin_token_gives_the_clinic_from_the_claim():
    ctx = authenticate(
        headers(mint("clinica_norte", "admin", sub="u1", name="Ana")),
        hs_settings(),
        TENANTS,
        "req-1",
    )
    assert ctx.schema == "clinica_norte"
    assert ctx.clinic_name == "Clínica Norte"
    assert ctx.role is Role.ADMIN
    assert ctx.user_id == "u1" and ctx.user_name == "Ana" and ctx.request_id == "req-1"
    assert ctx.permissions == {
        Permission.LIST,
        Permission.CREATE,
        Permission.DOWNLOAD,
        Permission.DELETE,
        Permission.MANAGE_SETTINGS,
        Permission.RESTORE,
        Permission.MANAGE_KEYS,
    }


def test_staff_may_list_and_create_but_not_download_or_delete_by_default():
    ctx = authenticate(headers(mint("clinica_norte", "staff")), hs_settings(), TENANTS)
    assert ctx.permissions == {Permission.LIST, Permission.CREATE}


def test_roles_are_configurable():
    ctx = authenticate(
        headers(mint("clinica_norte", "staff")),
        hs_settings(download_roles="admin,staff", create_roles="admin"),
        TENANTS,
    )
    assert ctx.permissions == {Permission.LIST, Permission.DOWNLOAD}


def test_case_matters_for_the_clinic_name():
    ctx = authenticate(headers(mint("Clinica_Norte", "admin")), hs_settings(), TENANTS)
    assert ctx.schema == "Clinica_Norte" and ctx.clinic_name == "Otra clínica con mayúsculas"
    with pytest.raises(ClinicNotAvailable):
        authenticate(headers(mint("CLINICA_NORTE", "admin")), hs_settings(), TENANTS)


def test_missing_and_malformed_authorization_headers():
    with pytest.raises(MissingToken):
        bearer_token({})
    with pytest.raises(InvalidToken):
        bearer_token({"authorization": "Basic abc"})
    with pytest.raises(InvalidToken):
        bearer_token({"authorization": "Bearer   "})
    assert bearer_token({"AUTHORIZATION": "bearer abc"}) == "abc"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            lambda: mint("clinica_norte", secret="another-secret-of-sufficient-length-0123456789"),
            id="forged",
        ),
        pytest.param(lambda: mint("clinica_norte", aud="another-api"), id="wrong-audience"),
        pytest.param(lambda: mint("clinica_norte", iss="https://evil.example/"), id="wrong-issuer"),
        pytest.param(lambda: mint("clinica_norte", aud=None), id="no-audience"),
        pytest.param(lambda: mint("clinica_norte", exp=None), id="no-expiry"),
        pytest.param(
            lambda: mint("clinica_norte", nbf=int(time.time()) + 3600), id="not-yet-valid"
        ),
        pytest.param(lambda: mint("clinica_norte", algorithm="HS512"), id="algorithm-not-allowed"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
        pytest.param(lambda: mint("clinica_norte", sub=None), id="no-subject"),
    ],
)
def test_invalid_tokens_are_refused(token):
    with pytest.raises(InvalidToken):
        authenticate(headers(token()), hs_settings(), TENANTS)


def test_expired_token_is_its_own_error():
    with pytest.raises(TokenExpired):
        authenticate(headers(mint("clinica_norte", ttl=-120)), hs_settings(), TENANTS)


def _unsigned(payload: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


def test_alg_none_is_refused():
    now = int(time.time())
    token = _unsigned(
        {
            "sub": "u",
            "tenant": "clinica_norte",
            "clinic_role": "admin",
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "exp": now + 60,
        }
    )
    with pytest.raises(InvalidToken):
        authenticate(headers(token), hs_settings(), TENANTS)
    with pytest.raises(InvalidToken):
        authenticate(headers(token), hs_settings(jwt_algorithms="HS256"), TENANTS)


@pytest.mark.parametrize(
    "tenant",
    [
        "clinica_cerrada",
        "clinica_inexistente",
        "public",
        "pg_catalog",
        "information_schema",
        "x;drop schema y",
        'a"b',
        "",
        None,
        42,
        ["clinica_norte"],
    ],
)
def test_unknown_inactive_or_unsafe_clinics_are_forbidden(tenant):
    with pytest.raises(ClinicNotAvailable):
        authenticate(headers(mint(None, tenant=tenant)), hs_settings(), TENANTS)


@pytest.mark.parametrize("role", ["authenticated", "superadmin", None, "ADMIN"])
def test_a_token_without_a_backup_role_is_forbidden(role):
    with pytest.raises(Forbidden):
        authenticate(headers(mint("clinica_norte", role)), hs_settings(), TENANTS)


def test_supabase_style_claims_under_app_metadata():
    token = mint(
        None,
        None,
        role="authenticated",
        app_metadata={"tenant": "clinica_norte", "clinic_role": "staff"},
        email="recepcion@norte.es",
        name=None,
    )
    settings = hs_settings(
        tenant_claim="app_metadata.tenant", role_claim="app_metadata.clinic_role"
    )
    ctx = authenticate(headers(token), settings, TENANTS)
    assert (ctx.schema, ctx.role, ctx.user_name) == (
        "clinica_norte",
        Role.STAFF,
        "recepcion@norte.es",
    )


def test_claim_lookup_by_dotted_path():
    assert claim({"a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert claim({"a": {"b": 2}}, "a.b.c") is None
    assert claim({}, "a") is None


def test_settings_refuse_algorithm_confusion():
    with pytest.raises(ValueError):
        hs_settings(jwt_algorithms="RS256")
    with pytest.raises(ValueError):
        CommonSettings(
            database_url="postgresql://x",
            jwt_jwks_url="http://x/jwks",
            jwt_algorithms="HS256",
            jwt_issuer="i",
            jwt_audience="a",
        )
    with pytest.raises(ValueError):
        CommonSettings(database_url="postgresql://x", jwt_issuer="i", jwt_audience="a")


# --- JWKS (RS256 / ES256, as Supabase Auth's asymmetric keys) ------------------------------


class JwksServer:
    def __init__(self, jwks: dict[str, Any]):
        self.http = JsonServer(lambda path: jwks)
        self.url = f"{self.http.base_url}/.well-known/jwks.json"

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks: dict[str, list[dict[str, Any]]] = {"keys": []}
    for kid, key, alg in (("rsa-1", rsa_key, "RS256"), ("ec-1", ec_key, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        jwks["keys"].append(jwk)
    server = JwksServer(jwks)
    yield {"rsa": rsa_key, "ec": ec_key, "url": server.url}
    server.close()


def jwks_settings(url: str) -> CommonSettings:
    return CommonSettings(
        database_url="postgresql://unused",
        jwt_jwks_url=url,
        jwt_algorithms="RS256,ES256",
        jwt_issuer=JWT_ISSUER,
        jwt_audience=JWT_AUDIENCE,
    )


@pytest.mark.parametrize("kind,alg,kid", [("rsa", "RS256", "rsa-1"), ("ec", "ES256", "ec-1")])
def test_asymmetric_tokens_verify_through_jwks(keys, kind, alg, kid):
    token = mint("clinica_norte", "admin", secret=keys[kind], algorithm=alg, headers={"kid": kid})
    ctx = authenticate(headers(token), jwks_settings(keys["url"]), TENANTS)
    assert ctx.schema == "clinica_norte"


def test_hmac_token_signed_with_the_public_key_is_refused(keys):
    # Algorithm confusion: HS256 with the RSA public key as the "secret".
    public_pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    payload = {
        "sub": "u",
        "tenant": "clinica_norte",
        "clinic_role": "admin",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "exp": int(time.time()) + 60,
    }
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()).rstrip(
        b"="
    )
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    ).rstrip(b"=")
    token = (header + b"." + body + b"." + signature).decode()
    with pytest.raises(InvalidToken):
        authenticate(headers(token), jwks_settings(keys["url"]), TENANTS)


def test_token_signed_by_an_unknown_key_is_refused(keys):
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = mint("clinica_norte", secret=stranger, algorithm="ES256", headers={"kid": "ec-1"})
    with pytest.raises(InvalidToken):
        verify_token(token, jwks_settings(keys["url"]))

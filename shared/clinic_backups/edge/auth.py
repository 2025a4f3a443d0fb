"""Tenant authentication: a verified JWT becomes a `TenantContext`.

The clinic comes only from a verified claim of the token, never from a header, the path or the
body. Verification (PyJWT):
  - the token's `alg` picks its key source: HS256/384/512 the shared secret, RS*/ES*/PS* the
    JWKS key its `kid` names (whose own `alg`, when it declares one, must agree). Both sources
    may be set at once, as during a Supabase key rotation; an HMAC token never meets a JWKS
    key and an asymmetric one never the secret, so algorithm confusion and `alg: none` fail;
  - an unknown `kid` fetches the JWKS again at once, at most once per
    `JWT_JWKS_REFRESH_SECONDS` (PyJWT's default cooldown refuses a new key for 30 s after any
    fetch, the first one included); the set is cached `JWT_JWKS_CACHE_SECONDS`, not key by key
    forever, so a revoked key stops verifying;
  - `exp` is required, `nbf` honoured, `iss` (with or without a trailing slash) and `aud`
    must match the settings;
  - the tenant claim must be a safe schema name and name an active row of the tenants table;
  - the user id and display-name claims must be text a person could have: at most
    `MAX_CLAIM_CHARS` characters, no control characters, no unpaired surrogates (a NUL or a
    surrogate cannot be stored, logged as JSON or audited). Otherwise `InvalidClaims`, a 401
    `invalid_token` the API audits in the token's clinic (`api.use_tenant_auth`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Any

import jwt

from clinic_backups.domain.errors import (
    ClinicNotAvailable,
    Forbidden,
    InvalidToken,
    MissingToken,
    ServiceUnavailable,
    TokenExpired,
)
from clinic_backups.domain.models import Permission, Role, TenantContext
from clinic_backups.domain.names import is_valid_schema_name
from clinic_backups.domain.ports import TenantDirectory
from clinic_backups.wiring.settings import HMAC_ALGORITHMS, CommonSettings

MAX_CLAIM_CHARS = 256


class InvalidClaims(InvalidToken):
    """A verified token whose user claims no person can have. `schema` is the token's clinic
    when it is a real, active one (the refusal is audited there), else None."""

    default_message = "The access token's user claims are not valid."

    def __init__(self, claims: list[str], schema: str | None):
        super().__init__()
        self.claims = claims
        self.schema = schema


def is_plain_text(value: object, max_chars: int = MAX_CLAIM_CHARS) -> bool:
    """Non-empty text of at most `max_chars` characters without control characters (C0, C1:
    NUL, newlines…) or unpaired surrogates."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_chars
        and not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    )


def claim(claims: Mapping[str, Any], dotted: str) -> Any:
    """Look up `a.b.c` in nested claims; None when any step is missing."""
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def bearer_token(headers: Mapping[str, str] | None) -> str:
    headers = headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        raise MissingToken()
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Use an `Authorization: Bearer <token>` header.")
    return token.strip()


@cache
def _jwks_client(url: str, lifespan: float, cooldown: float) -> jwt.PyJWKClient:
    # One per container (and settings): the key set is cached `lifespan` seconds. No per-kid
    # cache (cache_keys): it never expires, so a revoked key would verify until a cold start.
    return jwt.PyJWKClient(
        url, cache_jwk_set=True, lifespan=lifespan, cooldown_duration=cooldown, timeout=5
    )


def _jwks_key(token: str, header: dict[str, Any], settings: CommonSettings) -> Any:
    kid = header.get("kid")
    if not settings.jwt_jwks_url or not isinstance(kid, str) or not kid:
        raise InvalidToken()
    client = _jwks_client(
        settings.jwt_jwks_url, settings.jwt_jwks_cache_seconds, settings.jwt_jwks_refresh_seconds
    )
    try:
        jwk = client.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError:
        raise ServiceUnavailable("The signing keys could not be fetched.") from None
    except jwt.PyJWTError:
        raise InvalidToken() from None
    declared = jwk._jwk_data.get("alg")
    if declared is not None and declared != header["alg"]:
        raise InvalidToken()
    return jwk.key


def _issuers(issuer: str) -> list[str]:
    base = issuer.rstrip("/")
    return [base, base + "/"]


def verify_token(token: str, settings: CommonSettings) -> dict[str, Any]:
    """Verified claims, or InvalidToken/TokenExpired. Never echoes the token or claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken() from None
    algorithm = header.get("alg")
    if algorithm not in settings.jwt_algorithms:
        raise InvalidToken("The token's signing algorithm is not accepted.")

    key: Any
    if algorithm in HMAC_ALGORITHMS:
        if settings.jwt_secret is None:
            raise InvalidToken()
        key = settings.jwt_secret.get_secret_value()
    else:
        key = _jwks_key(token, header, settings)

    try:
        return jwt.decode(
            token,
            key,
            # Only the header's algorithm, already matched to its key source above.
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=_issuers(settings.jwt_issuer),
            leeway=settings.jwt_leeway_seconds,
            # `sub` is checked by tenant_context like any user claim (its name is a setting),
            # so a verified token with a hostile one is refused and audited in its clinic.
            options={"require": ["exp", "iss", "aud"], "verify_nbf": True, "verify_sub": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.PyJWTError:
        raise InvalidToken() from None


def permissions_for(role: Role, settings: CommonSettings) -> frozenset[Permission]:
    table = {
        Permission.LIST: settings.list_roles,
        Permission.CREATE: settings.create_roles,
        Permission.DOWNLOAD: settings.download_roles,
        Permission.DELETE: settings.delete_roles,
        Permission.MANAGE_SETTINGS: settings.settings_roles,
        Permission.RESTORE: settings.restore_roles,
        Permission.MANAGE_KEYS: settings.keys_roles,
    }
    return frozenset(p for p, roles in table.items() if role.value in roles)


def tenant_context(
    claims: Mapping[str, Any],
    settings: CommonSettings,
    tenants: TenantDirectory,
    request_id: str | None = None,
) -> TenantContext:
    """Turn verified claims into the caller's context, checking the clinic is real and active."""
    user_id = claim(claims, settings.user_id_claim)
    if user_id is None or user_id == "":
        raise InvalidToken("The token has no user id.")
    hostile = [] if is_plain_text(user_id) else [settings.user_id_claim]
    # A display name may be absent or empty (the next claim is used), never anything else.
    hostile += [
        name
        for name in settings.user_name_claims
        if claim(claims, name) not in (None, "") and not is_plain_text(claim(claims, name))
    ]

    schema = claim(claims, settings.tenant_claim)
    clinic = tenants.get(schema) if is_valid_schema_name(schema) else None
    if hostile:
        raise InvalidClaims(hostile, clinic.schema if clinic and clinic.active else None)
    if clinic is None or not clinic.active:
        raise ClinicNotAvailable()

    raw_role = claim(claims, settings.role_claim)
    try:
        role = Role(raw_role)
    except ValueError:
        raise Forbidden("Your account has no backup role in this clinic.") from None

    user_name = next(
        (
            v
            for v in (claim(claims, c) for c in settings.user_name_claims)
            if isinstance(v, str) and v
        ),
        None,
    )
    return TenantContext(
        schema=clinic.schema,
        clinic_name=clinic.name,
        user_id=user_id,
        user_name=user_name,
        role=role,
        permissions=permissions_for(role, settings),
        request_id=request_id,
    )


def authenticate(
    headers: Mapping[str, str] | None,
    settings: CommonSettings,
    tenants: TenantDirectory,
    request_id: str | None = None,
) -> TenantContext:
    return tenant_context(
        verify_token(bearer_token(headers), settings), settings, tenants, request_id
    )

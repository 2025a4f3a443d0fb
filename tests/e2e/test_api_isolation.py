"""Black-box isolation tests generated from the route table, against the local stack.

Two clinics of their own, each with real data behind every kind of id (a completed backup,
its pre-restore backup, a restore, a verification, a registered key). Every operation of
`openapi.yaml` (paths × methods) is then tried:

- **cross-clinic**: with the other clinic's tokens (each role), on each of the victim's real
  ids of every kind, with bodies that name the victim (its schema, its ids);
- **listing**: the list routes with the victim named in the query, in headers and in bodies;
- **forged tokens**: wrong key, `alg: none`, HS/RS algorithm confusion (HS256 over the RSA
  public key, RS256 where HS256 is expected), expired, not yet valid, no `exp`, wrong `iss`,
  wrong `aud`, malformed, other schemes — each naming the victim clinic;
- **hostile claims** signed with the real key: tenant claims no clinic has (reserved schemas,
  injections, other case, wrong types), roles no one has, user claims no person has.

Each answer must be one the contract allows for that attempt (status and error code, JSON),
and none may contain anything of the victim: its schema, clinic name, ids, key, note. After
every attempt the victim's data is exactly as it was. At least 1,000 attempts; the count is
printed.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import psycopg2
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg2 import sql

from devstack import tokens
from tests import summary
from tests.e2e.api_support import ROLES, World, bearer, build_world, jwt_secret
from tests.e2e.conftest import REPO, LocalStack

pytestmark = pytest.mark.e2e

MIN_ATTEMPTS = 1000


def operations() -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation in the contract."""
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text())
    return [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


OPERATIONS = operations()
ID_OPERATIONS = [(m, p) for m, p in OPERATIONS if "{id}" in p]
LIST_OPERATIONS = [(m, p) for m, p in OPERATIONS if m == "GET" and "{id}" not in p]

# A body each operation accepts (when it reads one), so an answer is not just a 422.
VALID_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/backups"): {"note": "intento"},
    ("PATCH", "/backups/{id}"): {"keep": True},
    ("PUT", "/backup-settings"): {
        "enabled": True,
        "hour": 4,
        "weekdays": [1],
        "time_zone": "Europe/Madrid",
        "keep_daily": 7,
        "keep_weekly": 4,
        "keep_monthly": 6,
    },
    ("POST", "/encryption-keys"): None,  # filled with a fresh key per attempt
}
# Answers the contract allows to another clinic's id: the id is unknown here, or the role may
# not do it (a role check comes before any lookup), or the body is invalid for this clinic.
CROSS_CLINIC_ANSWERS = {
    (403, "forbidden"),
    (404, "backup_not_found"),
    (404, "restore_not_found"),
    (404, "key_not_found"),
    (422, "validation_error"),
}


@dataclass
class Tally:
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.attempts.values())


TALLY = Tally()


@pytest.fixture(scope="module")
def worlds(stack: LocalStack) -> Iterator[tuple[World, World]]:
    victim = build_world(stack, "victima")
    attacker = build_world(stack, "atacante", restore=False)
    with stack.client() as client:
        listed = client.get("/backups", headers=bearer(victim.tokens["admin"]))
        assert listed.status_code == 200
        victim.extra["cursor"] = _cursor_of(client, victim)
    yield victim, attacker
    summary.add(
        f"isolation: {TALLY.total} attempts ({dict(TALLY.attempts)}) on "
        f"{len(OPERATIONS)} operations; statuses {dict(sorted(TALLY.statuses.items()))}"
    )


def _cursor_of(client: httpx.Client, world: World) -> str:
    page = client.get("/backups", params={"limit": 1}, headers=bearer(world.tokens["admin"]))
    cursor = page.json()["next_cursor"]
    assert cursor, page.text
    return str(cursor)


def secrets_of(world: World, stack: LocalStack) -> list[str]:
    """What of the victim must never appear in an answer to someone else."""
    found = [world.schema, f"Clínica {world.schema}", world.public_key, "mundo victima"]
    found += [v for v in world.ids().values() if v]
    with psycopg2.connect(stack.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT fingerprint FROM {}").format(
                sql.Identifier(world.schema, "backup_keys")
            )
        )
        found += [row[0] for row in cur.fetchall()]
    conn.close()
    return found


def snapshot(stack: LocalStack, world: World) -> dict[str, Any]:
    """The victim's data as the database holds it (what no attempt may change)."""
    tables = ("backup_records", "backup_restores", "backup_keys", "backup_settings")
    out: dict[str, Any] = {}
    with psycopg2.connect(stack.admin_url) as conn, conn.cursor() as cur:
        for table in tables:
            cur.execute(
                sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(
                    sql.Identifier(world.schema, table)
                )
            )
            out[table] = [row[0] for row in cur.fetchall()]
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(world.schema, "backup_audit"))
        )
        out["audit_rows"] = cur.fetchone()[0]
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE actor_id LIKE %s").format(
                sql.Identifier(world.schema, "backup_audit")
            ),
            ("u-%-atacante%",),
        )
        out["audit_by_attacker"] = cur.fetchone()[0]
    conn.close()
    return out


class Attempts:
    """Sends attempts and judges each answer."""

    def __init__(self, client: httpx.Client, leaks: list[str], kind: str):
        self.client = client
        self.leaks = leaks
        self.kind = kind

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        allowed: set[tuple[int, str]] | None = None,
        statuses: set[int] | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        label: str = "",
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        sent_headers = dict(headers)
        if content is not None:
            sent_headers["Content-Type"] = "application/json"
        answer = self.client.request(
            method, path, headers=sent_headers, content=content, params=params
        )
        TALLY.attempts[self.kind] += 1
        TALLY.statuses[answer.status_code] += 1
        where = f"[{self.kind}] {method} {path} {label}".strip()
        problems = []
        if answer.headers.get("content-type") != "application/json" and answer.status_code != 204:
            problems.append(f"content type {answer.headers.get('content-type')}")
        code = None
        if answer.status_code >= 400:
            try:
                code = answer.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                problems.append("not the error shape")
        if allowed is not None and (answer.status_code, code) not in allowed:
            problems.append(f"answered {answer.status_code} {code}")
        if statuses is not None and answer.status_code not in statuses:
            problems.append(f"answered {answer.status_code} {code}")
        leaked = [s for s in self.leaks if s and s in answer.text]
        if leaked:
            problems.append(f"leaked {len(leaked)} of the victim's values")
        if problems:
            TALLY.failures.append(f"{where}: {'; '.join(problems)}")
        return answer


def _fresh_public_key() -> str:
    from pyrage import x25519

    return str(x25519.Identity.generate().to_public())


def _bodies(method: str, path: str, victim: World, attacker: World) -> list[Any]:
    """Bodies for an operation that name the victim wherever a body can."""
    if method not in ("POST", "PUT", "PATCH"):
        return [None]
    if path == "/backups/{id}/restore":
        return [{"confirm": attacker.schema}, {"confirm": victim.schema}]
    if path == "/encryption-keys":
        return [{"label": victim.schema, "public_key": victim.public_key}]
    valid = VALID_BODIES.get((method, path))
    named = {"schema": victim.schema, "tenant": victim.schema, "backup_id": victim.backup_id}
    return [valid, {**(valid or {}), **named}] if valid is not None else [None, named]


# --- cross-clinic ids ----------------------------------------------------------------------------


def test_another_clinics_ids_on_every_route_method_and_role_reveal_and_change_nothing(
    stack: LocalStack, worlds: tuple[World, World]
) -> None:
    victim, attacker = worlds
    before = snapshot(stack, victim)
    with stack.client() as client:
        send = Attempts(client, secrets_of(victim, stack), "cross_clinic").send
        for method, path in ID_OPERATIONS:
            for role in ROLES:
                for kind, real_id in victim.ids().items():
                    for body in _bodies(method, path, victim, attacker):
                        send(
                            method,
                            path.replace("{id}", real_id),
                            headers={
                                **bearer(attacker.tokens[role]),
                                # the victim named everywhere a client could name it
                                "X-Tenant": victim.schema,
                                "X-Clinic": victim.schema,
                            },
                            params={"tenant": victim.schema, "schema": victim.schema},
                            body=body,
                            allowed=CROSS_CLINIC_ANSWERS,
                            label=f"as {role} with the victim's {kind} id",
                        )
    assert TALLY.failures == [], "\n".join(TALLY.failures[:40])
    assert snapshot(stack, victim) == before
    assert TALLY.attempts["cross_clinic"] >= 150


def test_listings_show_only_the_callers_clinic_whatever_names_the_victim(
    stack: LocalStack, worlds: tuple[World, World]
) -> None:
    victim, attacker = worlds
    before = snapshot(stack, victim)
    variants: list[dict[str, Any]] = [
        {},
        {"params": {"tenant": victim.schema}},
        {"params": {"schema": victim.schema, "clinic": victim.schema}},
        {"params": {"cursor": victim.extra["cursor"]}},
        {"params": {"include_deleted": "true", "status": "completed"}},
        {"headers": {"X-Tenant": victim.schema, "X-Forwarded-Host": victim.schema}},
        {"headers": {"Cookie": f"tenant={victim.schema}"}},
    ]
    with stack.client() as client:
        send = Attempts(client, secrets_of(victim, stack), "listing").send
        for method, path in LIST_OPERATIONS:
            for role in ROLES:
                for variant in variants:
                    send(
                        method,
                        path,
                        headers={**bearer(attacker.tokens[role]), **variant.get("headers", {})},
                        params=variant.get("params"),
                        # an admin-only route or filter is a 403 for staff
                        statuses={200, 403},
                        label=f"as {role} {variant}",
                    )
        # the attacker's own data is there: it is the listing, not an empty answer
        own = client.get("/backups", headers=bearer(attacker.tokens["admin"])).json()["items"]
    assert {b["id"] for b in own} >= {attacker.backup_id}
    assert TALLY.failures == [], "\n".join(TALLY.failures[:40])
    assert snapshot(stack, victim) == before


# --- forged and hostile tokens -------------------------------------------------------------------

ISSUER, AUDIENCE = tokens.DEMO_ISSUER, tokens.DEMO_AUDIENCE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(schema: str, role: str = "admin", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": f"u-forger-{uuid.uuid4().hex[:6]}",
        "name": "Falsificador",
        "tenant": schema,
        "clinic_role": role,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _hs_over(key: bytes, claims: dict[str, Any], alg: str = "HS256") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = _b64(hmac.new(key, f"{header}.{body}".encode(), digest).digest())
    return f"{header}.{body}.{signature}"


def forged_tokens(victim: World, secret: str) -> dict[str, tuple[str, set[tuple[int, str]]]]:
    """Tokens that must not let anyone in, each with the answers the contract allows."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    invalid = {(401, "invalid_token")}
    expired = {(401, "token_expired")}
    now = int(time.time())
    claims = _claims(victim.schema)
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_body = _b64(json.dumps(claims).encode())
    real = jwt.encode(claims, secret, algorithm="HS256")
    head, body, sig = real.split(".")
    other_claims = _b64(json.dumps(_claims(victim.schema, sub="u-other")).encode())
    forged: dict[str, tuple[str, set[tuple[int, str]]]] = {
        "wrong_key": (jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256"), invalid),
        "alg_none": (f"{none_header}.{none_body}.", invalid),
        "alg_none_upper": (
            f"{_b64(json.dumps({'alg': 'NONE'}).encode())}.{none_body}.",
            invalid,
        ),
        "hs256_over_rsa_public_key": (_hs_over(public_pem, claims), invalid),
        "rs256_where_hs256_is_expected": (
            jwt.encode(claims, rsa_key, algorithm="RS256"),
            invalid,
        ),
        "hs512_with_the_secret": (jwt.encode(claims, secret, algorithm="HS512"), invalid),
        "swapped_payload": (f"{head}.{other_claims}.{sig}", invalid),
        "no_signature": (f"{head}.{body}.", invalid),
        "truncated": (real[:-10], invalid),
        "garbage": ("not.a.token", invalid),
        "empty_segments": ("..", invalid),
        "expired": (
            jwt.encode(_claims(victim.schema, iat=now - 7200, exp=now - 3600), secret),
            expired,
        ),
        "not_yet_valid": (
            jwt.encode(_claims(victim.schema, nbf=now + 3600), secret),
            invalid,
        ),
        "no_exp": (jwt.encode(_claims(victim.schema, exp=_DROP), secret), invalid),
        "wrong_issuer": (
            jwt.encode(_claims(victim.schema, iss="https://evil.example/"), secret),
            invalid,
        ),
        "wrong_audience": (jwt.encode(_claims(victim.schema, aud="another-api"), secret), invalid),
        "no_audience": (jwt.encode(_claims(victim.schema, aud=_DROP), secret), invalid),
        "exp_as_text": (jwt.encode(_claims(victim.schema, exp="tomorrow"), secret), invalid),
    }
    return forged


def hostile_claims(victim: World, secret: str) -> dict[str, tuple[str, set[tuple[int, str]]]]:
    """Tokens signed with the real key whose claims no clinic, role or person has."""
    no_clinic = {(403, "clinic_not_available")}
    no_role = {(403, "forbidden")}
    bad_user = {(401, "invalid_token")}
    tenants: dict[str, Any] = {
        "public": "public",
        "pg_catalog": "pg_catalog",
        "information_schema": "information_schema",
        "injection": f"{victim.schema}; DROP SCHEMA {victim.schema} CASCADE",
        "quoted": f'{victim.schema}"',
        "other_case": victim.schema.upper(),
        "path": f"../{victim.schema}",
        "wildcard": "clinica_%",
        "nul": f"{victim.schema}\u0000",
        "too_long": "c" * 200,
        "empty": "",
        "number": 42,
        "list": [victim.schema],
        "object": {"schema": victim.schema},
        "null": None,
        "unknown": "clinica_que_no_existe",
    }
    found = {
        f"tenant_{name}": (jwt.encode(_claims(value), secret), no_clinic)
        for name, value in tenants.items()
    }
    roles: dict[str, Any] = {
        "superadmin": "superadmin",
        "upper": "ADMIN",
        "list": ["admin"],
        "object": {"admin": True},
        "empty": "",
        "authenticated": "authenticated",
    }
    found |= {
        f"role_{name}": (jwt.encode(_claims(victim.schema, role=value), secret), no_role)
        for name, value in roles.items()
    }
    users: dict[str, dict[str, Any]] = {
        "sub_nul": {"sub": "u\u0000"},
        "sub_surrogate": {"sub": "u\ud800"},
        "sub_huge": {"sub": "u" * 5000},
        "sub_number": {"sub": 7},
        "sub_object": {"sub": {"id": 1}},
        "name_nul": {"name": "Ana\u0000"},
        "name_list": {"name": ["Ana"]},
        "name_newline": {"name": "Ana\r\nX-Admin: 1"},
    }
    found |= {
        f"user_{name}": (jwt.encode(_claims(victim.schema, **value), secret), bad_user)
        for name, value in users.items()
    }
    return found


def test_forged_and_hostile_tokens_on_every_route_get_the_contracts_answer(
    stack: LocalStack, worlds: tuple[World, World]
) -> None:
    victim, attacker = worlds
    before = snapshot(stack, victim)
    secret = jwt_secret(stack)
    cases = forged_tokens(victim, secret) | hostile_claims(victim, secret)
    schemes = {
        "no_header": ({}, {(401, "missing_token")}),
        "basic": ({"Authorization": "Basic dXNlcjpwYXNz"}, {(401, "invalid_token")}),
        "bearer_no_token": ({"Authorization": "Bearer"}, {(401, "invalid_token")}),
        "two_tokens": (
            {"Authorization": f"Bearer {victim.tokens['admin']} {victim.tokens['admin']}"},
            {(401, "invalid_token")},
        ),
    }
    with stack.client() as client:
        send = Attempts(client, secrets_of(victim, stack), "token").send
        for method, path in OPERATIONS:
            targets = [path]
            if "{id}" in path:
                real = victim.ids()[
                    "backup"
                    if "/backups/" in path
                    else "restore"
                    if "/restores/" in path
                    else "key"
                ]
                targets = [path.replace("{id}", real), path.replace("{id}", str(uuid.uuid4()))]
            body = _bodies(method, path, victim, attacker)[0]
            for target in targets:
                for name, (forged, allowed) in cases.items():
                    send(
                        method,
                        target,
                        headers=bearer(forged),
                        body=body,
                        allowed=allowed,
                        label=name,
                    )
                for name, (headers, allowed) in schemes.items():
                    send(method, target, headers=headers, body=body, allowed=allowed, label=name)
    assert TALLY.failures == [], "\n".join(TALLY.failures[:40])
    after = snapshot(stack, victim)
    # the hostile-user tokens named the victim's clinic and verified: their refusals are
    # audited there (and nothing else changed)
    assert {k: v for k, v in after.items() if k != "audit_rows"} == {
        k: v for k, v in before.items() if k != "audit_rows"
    }
    tried = len(OPERATIONS) + len(ID_OPERATIONS)
    assert after["audit_rows"] - before["audit_rows"] == 8 * tried
    assert TALLY.attempts["token"] >= MIN_ATTEMPTS, TALLY.attempts

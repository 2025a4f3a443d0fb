"""Clinics of their own on a running local stack, with real data behind every kind of id, for
the black-box API tests (the fuzzer and the generated isolation tests).

A `World` is one clinic created for a test module (schema, tenant row, the least-privilege
grants the demo clinics get), tokens for each role minted with the stack's own secret, and
real ids made through the API: a completed backup, a verification, a restore (with its
pre-restore backup), a registered key.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg2
from pyrage import x25519

from devstack import clinic_data, demo, tokens
from devstack.state import StateDir
from tests.e2e.conftest import LocalStack

ROLES = ("admin", "staff")


def jwt_secret(stack: LocalStack) -> str:
    return StateDir(stack.state_dir).secrets()["jwt_secret"]


def token(stack: LocalStack, schema: str, role: str, **claims: Any) -> str:
    return tokens.mint(
        jwt_secret(stack),
        sub=claims.pop("sub", f"u-{role}-{schema}"),
        name=claims.pop("name", f"{role.title()} de {schema}"),
        tenant=schema,
        clinic_role=role,
        ttl_seconds=3600,
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def create_clinic(stack: LocalStack, prefix: str, patients: int = 20) -> str:
    """A clinic of the test's own on the stack's database, laid out like the demo's."""
    schema = f"{prefix}_{secrets.token_hex(3)}"
    with psycopg2.connect(stack.admin_url) as conn, conn.cursor() as cur:
        clinic_data.create_clinic_schema(
            cur, schema, patients=patients, note_bytes=20, owner=demo.APP_ROLE
        )
        clinic_data.register_tenant(cur, schema, f"Clínica {schema}")
        cur.execute("SELECT current_database()")
        (database,) = cur.fetchone()
        demo.apply_least_privilege(cur, database, [schema])
    conn.close()
    return schema


def wait_until(
    client: httpx.Client, path: str, headers: dict[str, str], done: Any, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"{path} did not finish: {body}"
        time.sleep(0.2)


@dataclass
class World:
    """One clinic with real data behind every kind of id."""

    schema: str
    tokens: dict[str, str]
    backup_id: str = ""
    pre_restore_backup_id: str = ""
    verification_id: str = ""
    restore_id: str = ""
    key_id: str = ""
    identity: str = ""
    public_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def ids(self) -> dict[str, str]:
        return {
            "backup": self.backup_id,
            "pre_restore_backup": self.pre_restore_backup_id,
            "verification": self.verification_id,
            "restore": self.restore_id,
            "key": self.key_id,
        }


def build_world(stack: LocalStack, prefix: str, *, restore: bool = True) -> World:
    schema = create_clinic(stack, prefix)
    world = World(schema=schema, tokens={r: token(stack, schema, r) for r in ROLES})
    admin = bearer(world.tokens["admin"])
    identity = x25519.Identity.generate()
    world.identity, world.public_key = str(identity), str(identity.to_public())
    with stack.client() as client:
        key = client.post(
            "/encryption-keys",
            headers=admin,
            json={"label": "Dirección", "public_key": world.public_key},
        )
        assert key.status_code == 201, key.text
        world.key_id = key.json()["id"]
        created = client.post("/backups", headers=admin, json={"note": f"mundo {prefix}"})
        assert created.status_code == 202, created.text
        world.backup_id = created.json()["id"]
        wait_until(
            client,
            f"/backups/{world.backup_id}",
            admin,
            lambda b: b["status"] == "completed" and b["checked_at"] is not None,
        )
        verify = client.post(f"/backups/{world.backup_id}/verify", headers=admin)
        assert verify.status_code == 202, verify.text
        world.verification_id = verify.json()["id"]
        wait_until(
            client,
            f"/restores/{world.verification_id}",
            admin,
            lambda j: j["status"] in ("completed", "failed"),
        )
        if restore:
            started = client.post(
                f"/backups/{world.backup_id}/restore", headers=admin, json={"confirm": schema}
            )
            assert started.status_code == 202, started.text
            world.restore_id = started.json()["id"]
            job = wait_until(
                client,
                f"/restores/{world.restore_id}",
                admin,
                lambda j: j["status"] in ("completed", "failed"),
                timeout=120,
            )
            assert job["status"] == "completed", job
            world.pre_restore_backup_id = job["pre_restore_backup_id"]
    return world

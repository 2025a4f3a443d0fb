"""Fixtures of the restore tests: a database per server (PostgreSQL 15 here, the embedded
PostgreSQL 18) laid out as in production — clinics owned by the application role
`clinic_app`, the functions connected as `clinic_backup`, restores as `clinic_restore`
(devstack.demo.apply_least_privilege, the local demo's own grants)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from devstack import clinic_data, demo
from tests import helpers
from tests.conftest import with_dbname


@dataclass(frozen=True)
class RestoreDatabase:
    server: str  # "pg15" | "pg18"
    admin_url: str
    backup_url: str
    restore_url: str
    database: str

    def as_role(self, role: str) -> str:
        params = psycopg2.extensions.parse_dsn(self.admin_url)
        params["user"] = role
        params.pop("password", None)
        return str(psycopg2.extensions.make_dsn(**params))


def _restore_database(server_url: str, label: str) -> Iterator[RestoreDatabase]:
    name = f"cbrestore_{secrets.token_hex(4)}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        demo.ensure_roles(cur, (demo.APP_ROLE, demo.BACKUP_ROLE, demo.RESTORE_ROLE))
        cur.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(demo.APP_ROLE)
            )
        )
    url = with_dbname(server_url, name)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        clinic_data.ensure_tenants_table(cur)
        demo.apply_least_privilege(cur, name, [])
    conn.close()
    db = RestoreDatabase(
        server=label,
        admin_url=url,
        backup_url="",
        restore_url="",
        database=name,
    )
    db = RestoreDatabase(
        server=label,
        admin_url=url,
        backup_url=db.as_role(demo.BACKUP_ROLE),
        restore_url=db.as_role(demo.RESTORE_ROLE),
        database=name,
    )
    try:
        yield db
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


@pytest.fixture(scope="session")
def restore_db_pg15(pg_server: str) -> Iterator[RestoreDatabase]:
    yield from _restore_database(pg_server, "pg15")


@pytest.fixture(scope="session")
def restore_db_pg18(pg18_server: str) -> Iterator[RestoreDatabase]:
    yield from _restore_database(pg18_server, "pg18")


@pytest.fixture(params=["pg15", "pg18"])
def restore_db(request: pytest.FixtureRequest) -> RestoreDatabase:
    """Parametrized: each test using it runs against PostgreSQL 15 and 18."""
    return request.getfixturevalue(f"restore_db_{request.param}")


@pytest.fixture
def restore_env(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, restore_db: RestoreDatabase
) -> Iterator[RestoreDatabase]:
    """The functions as in production: DATABASE_URL is the backup role, RESTORE_DATABASE_URL
    the restore role, on the parametrized server."""
    monkeypatch.setenv("DATABASE_URL", restore_db.backup_url)
    monkeypatch.setenv("RESTORE_DATABASE_URL", restore_db.restore_url)
    monkeypatch.setenv("RESTORE_TIMEOUT_SECONDS", "120")
    helpers.reset_caches()
    yield restore_db
    helpers.reset_caches()


@pytest.fixture
def restore_env_pg15(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, restore_db_pg15: RestoreDatabase
) -> Iterator[RestoreDatabase]:
    """`restore_env` on PostgreSQL 15 only (failure modes, concurrency, verification)."""
    monkeypatch.setenv("DATABASE_URL", restore_db_pg15.backup_url)
    monkeypatch.setenv("RESTORE_DATABASE_URL", restore_db_pg15.restore_url)
    monkeypatch.setenv("RESTORE_TIMEOUT_SECONDS", "120")
    helpers.reset_caches()
    yield restore_db_pg15
    helpers.reset_caches()


ClinicFactory = Callable[..., str]


def _owned_clinic_factory(db: RestoreDatabase) -> Iterator[ClinicFactory]:
    created: list[str] = []
    conn = psycopg2.connect(db.admin_url)

    def make(name: str | None = None, *, patients: int = 300, note_bytes: int = 60) -> str:
        schema = name or f"clinica_{secrets.token_hex(3)}"
        with conn, conn.cursor() as cur:
            clinic_data.create_clinic_schema(
                cur, schema, patients=patients, note_bytes=note_bytes, owner=demo.APP_ROLE
            )
            clinic_data.register_tenant(cur, schema, f"Clínica {schema}")
            demo.apply_least_privilege(cur, db.database, [schema])
        created.append(schema)
        return schema

    yield make
    helpers.drop_clinics(conn, created)
    conn.close()


@pytest.fixture
def owned_clinic(restore_env: RestoreDatabase) -> Iterator[ClinicFactory]:
    """Clinics owned by `clinic_app` with the least-privilege grants, on `restore_env`'s
    server; dropped (with any schema their restores kept) when the test ends."""
    yield from _owned_clinic_factory(restore_env)


@pytest.fixture
def owned_clinic_pg15(restore_env_pg15: RestoreDatabase) -> Iterator[ClinicFactory]:
    yield from _owned_clinic_factory(restore_env_pg15)


@pytest.fixture
def admin_db(restore_db_pg15: RestoreDatabase) -> Iterator[Any]:
    conn = psycopg2.connect(restore_db_pg15.admin_url)
    conn.autocommit = True
    yield conn
    conn.close()

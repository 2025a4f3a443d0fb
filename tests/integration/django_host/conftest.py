"""A real django-tenants 4.0.1 host (tests/django_fixture) on a database of this session's
own: Django connects as the application role `clinic_app`, the functions as `clinic_backup`,
restores as `clinic_restore` (the roles of a real deployment). Tenant names carry this
session's suffix; the database (with every tenant schema) is dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests import helpers
from tests.conftest import with_dbname

REPORTING_ROLE = "clinic_reporting"


@dataclass
class DjangoHost:
    admin_url: str
    app_url: str
    backup_url: str
    restore_url: str
    database: str
    suffix: str
    tenants: dict[str, str] = field(default_factory=dict)  # label -> schema

    def as_role(self, role: str) -> str:
        params = psycopg2.extensions.parse_dsn(self.admin_url)
        params["user"] = role
        params.pop("password", None)
        return str(psycopg2.extensions.make_dsn(**params))


def create_tenant(schema: str, name: str, *, active: bool = True, base: str | None = None) -> Any:
    """A tenant as the host creates one (`Client.save()` creates and migrates its schema;
    with `base`, django-tenants clones that schema: TENANT_BASE_SCHEMA, clone_schema)."""
    from django.db import connection
    from django.test.utils import override_settings

    from tests.django_fixture.customers.models import Client, Domain

    connection.set_schema_to_public()  # a request through the test client leaves its tenant

    def save() -> Any:
        client = Client(schema_name=schema, name=name, is_active=active)
        client.save(verbosity=0)
        Domain.objects.create(domain=f"{schema}.test", tenant=client, is_primary=True)
        return client

    if base is None:
        return save()
    with override_settings(TENANT_BASE_SCHEMA=base, TENANT_CREATION_FAKES_MIGRATIONS=True):
        return save()


@pytest.fixture(scope="session")
def django_host(pg_server: str) -> Iterator[DjangoHost]:
    name = f"cbdjango_{secrets.token_hex(4)}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        demo.ensure_roles(cur, (demo.APP_ROLE, demo.BACKUP_ROLE, demo.RESTORE_ROLE))
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPORTING_ROLE,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(REPORTING_ROLE)))
        cur.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(demo.APP_ROLE)
            )
        )
        # The restore role: a member of the app role and of the backup role, CREATE on the
        # database (docs/django-tenants.md, the one-time SQL).
        cur.execute(
            sql.SQL("GRANT {}, {} TO {}").format(
                sql.Identifier(demo.APP_ROLE),
                sql.Identifier(demo.BACKUP_ROLE),
                sql.Identifier(demo.RESTORE_ROLE),
            )
        )
        cur.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(demo.RESTORE_ROLE)
            )
        )
    url = with_dbname(pg_server, name)
    host = DjangoHost(
        admin_url=url, app_url="", backup_url="", restore_url="", database=name, suffix=""
    )
    host.app_url = host.as_role(demo.APP_ROLE)
    host.backup_url = host.as_role(demo.BACKUP_ROLE)
    host.restore_url = host.as_role(demo.RESTORE_ROLE)
    host.suffix = secrets.token_hex(3)

    os.environ["CLINIC_FIXTURE_DATABASE_URL"] = host.app_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_fixture.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    from tests.django_fixture.customers.models import Client

    Client(schema_name="public", name="Plataforma").save(verbosity=0)
    try:
        yield host
    finally:
        from django.db import connections

        connections.close_all()
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


@pytest.fixture
def host_env(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, django_host: DjangoHost
) -> Iterator[DjangoHost]:
    """The functions as deployed for the host: DATABASE_URL the backup role, restores and
    operator commands as the restore role, the backup tables owned by the backup role."""
    monkeypatch.setenv("DATABASE_URL", django_host.backup_url)
    monkeypatch.setenv("RESTORE_DATABASE_URL", django_host.restore_url)
    monkeypatch.setenv("BACKUP_TABLES_OWNER", demo.BACKUP_ROLE)
    monkeypatch.setenv("RESTORE_TIMEOUT_SECONDS", "120")
    helpers.reset_caches()
    yield django_host
    helpers.reset_caches()

"""`make run` with DATABASE_URL at a real django-tenants database writes nothing into it
unless `--demo` is given (it once tried to insert the demo clinics into customers_client)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg2

from devstack import demo
from devstack.run import Options, Stack, parse_args
from tests.integration.django_host.conftest import DjangoHost


def tenants_and_schemas(url: str) -> tuple[list, list]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT schema_name, name, is_active FROM customers_client ORDER BY 1")
        rows = cur.fetchall()
        cur.execute("SELECT nspname FROM pg_namespace ORDER BY 1")
        schemas = [r[0] for r in cur.fetchall()]
    conn.close()
    return rows, schemas


def test_run_never_writes_demo_data_into_a_database_it_did_not_create(django_host: DjangoHost):
    assert parse_args([]).demo is False and parse_args(["--demo"]).demo is True
    before = tenants_and_schemas(django_host.admin_url)
    with tempfile.TemporaryDirectory() as state:
        stack = Stack(
            Options(
                host="127.0.0.1",
                port=0,
                state_dir=Path(state),
                storage="s3",
                ui_build="never",
                pg_port=None,
            )
        )
        stack._start_database(django_host.admin_url, {"backup_db_password": "unused"})
    assert tenants_and_schemas(django_host.admin_url) == before
    assert not any(c.schema in before[1] for c in demo.CLINICS)
    assert "--demo" in stack.database_line

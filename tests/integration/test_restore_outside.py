"""Nothing outside the clinic (issue 18): a view in `public` over a clinic's table would follow
the swap's rename to the kept schema (and read the old data) and be dropped with it. The
restore refuses, naming it, before anything is locked; the sweeper drops a kept schema only
when nothing outside it depends on it (RESTRICT semantics), and says so."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
from psycopg2 import sql

from tests.helpers import FixedClock
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, checksums, restore, schemas_like
from tests.integration.test_restore_sweeper import kept_name, scheduler_services


def execute(url: str, statement: sql.Composable) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def test_a_view_outside_the_clinic_refuses_the_restore_naming_it(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    view = f"report_{schema}"
    execute(
        db.admin_url,
        sql.SQL("CREATE VIEW {} AS SELECT id, total FROM {}").format(
            sql.Identifier("public", view), sql.Identifier(schema, "invoices")
        ),
    )
    try:
        before = checksums(db.admin_url, schema)
        job = restore(schema, source["id"], restore_sqs)
        assert job["status"] == "failed"
        assert job["error_code"] == "outside_dependents"
        assert f"view public.{view}" in job["error"], job["error"]
        assert "nothing changed" in job["error"]
        # nothing changed: no schema set aside, no pre-restore backup, same data
        assert schemas_like(db.admin_url, schema) == [schema]
        assert job.get("pre_restore_backup_id") is None
        assert checksums(db.admin_url, schema) == before
    finally:
        execute(db.admin_url, sql.SQL("DROP VIEW {}").format(sql.Identifier("public", view)))


def test_the_sweeper_does_not_drop_a_kept_schema_something_outside_depends_on(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.sweeper import sweep

    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    job = restore(schema, source["id"], restore_sqs)
    assert job["status"] == "completed", job
    kept = kept_name(db.admin_url, schema, job["id"])
    # a view made over the kept schema after the restore (or left by an older version that
    # let a `public` view follow the rename)
    view = f"old_{schema}"
    execute(
        db.admin_url,
        sql.SQL("CREATE VIEW {} AS SELECT count(*) AS n FROM {}").format(
            sql.Identifier("public", view), sql.Identifier(kept, "patients")
        ),
    )
    try:
        svc = scheduler_services()
        svc.clock = FixedClock(svc.clock.now() + timedelta(days=3, hours=1))
        report = sweep(svc, [schema], orphans=False)
        assert report.schemas_dropped == 0 and report.schemas_refused == 1
        assert kept in schemas_like(db.admin_url, schema)
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT n FROM {}").format(sql.Identifier("public", view)))
            assert cur.fetchone()[0] == 30
        conn.close()

        # once the view is gone, the next sweep drops the kept schema
        execute(db.admin_url, sql.SQL("DROP VIEW {}").format(sql.Identifier("public", view)))
        report = sweep(svc, [schema], orphans=False)
        assert report.schemas_dropped == 1 and report.schemas_refused == 0
        assert kept not in schemas_like(db.admin_url, schema)
    finally:
        execute(
            db.admin_url,
            sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier("public", view)),
        )


def test_column_grants_survive_the_restore(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=20)
    role = f"report_{schema}"
    invoices = sql.Identifier(schema, "invoices")
    execute(db.admin_url, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        execute(
            db.admin_url,
            sql.SQL("GRANT SELECT (id, total) ON {} TO {}").format(invoices, sql.Identifier(role)),
        )
        execute(
            db.admin_url,
            sql.SQL("GRANT UPDATE (paid) ON {} TO {} WITH GRANT OPTION").format(
                invoices, sql.Identifier(role)
            ),
        )

        def column_acls() -> dict[str, str]:
            with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT attname, attacl::text FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attnum > 0 AND attacl IS NOT NULL ORDER BY attname",
                    (f'"{schema}".invoices',),
                )
                rows = dict(cur.fetchall())
            conn.close()
            return rows

        before = column_acls()
        assert set(before) == {"id", "total", "paid"}
        source = backup(schema, sqs)
        job = restore(schema, source["id"], restore_sqs)
        assert job["status"] == "completed", job
        assert column_acls() == before
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT has_column_privilege(%s, %s, 'total', 'SELECT'), "
                "has_column_privilege(%s, %s, 'number', 'SELECT'), "
                "has_table_privilege(%s, %s, 'SELECT')",
                (role, f'"{schema}".invoices') * 3,
            )
            assert cur.fetchone() == (True, False, False)
        conn.close()
    finally:
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.close()

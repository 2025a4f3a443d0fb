"""Nothing outside the clinic (issue 18). A view in `public` over a clinic's table would follow
the swap's rename to the kept schema (and read the old data) and be dropped with it: the swap
drops such views (and views on them) before the rename and recreates them against the
restored tables in the same transaction — definition, owner, grants, column grants,
comments, options, a materialized view's indexes and data — and the undo does the same.
Other dependents (a foreign key from `public`, a view the restore role cannot recreate)
refuse the restore, naming them, before anything is locked; the sweeper drops a kept schema
only when nothing outside it depends on it (RESTRICT semantics), and says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg2
from psycopg2 import sql

from devstack import demo
from tests.helpers import FixedClock
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import (
    backup,
    checksums,
    get_restore,
    restore,
    schemas_like,
    undo,
)
from tests.integration.test_restore_sweeper import kept_name, scheduler_services


def execute(url: str, statement: sql.Composable) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def count(url: str, relation: sql.Composable) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(relation))
        found = int(cur.fetchone()[0])
    conn.close()
    return found


def described(url: str, names: list[str]) -> dict[str, tuple[Any, ...]]:
    """Per view of `public`: kind, owner, reloptions, ACL, column ACLs, comments, indexes,
    whether populated — all a recreated view must keep."""
    out: dict[str, tuple[Any, ...]] = {}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(
                """
                SELECT c.relkind::text, pg_get_userbyid(c.relowner), c.reloptions::text,
                       c.relacl::text, obj_description(c.oid, 'pg_class'), c.relispopulated,
                       (SELECT array_agg(a.attname || ' ' || coalesce(a.attacl::text, '') || ' '
                                         || coalesce(col_description(c.oid, a.attnum), '')
                                         ORDER BY a.attnum)
                        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0),
                       (SELECT array_agg(pg_get_indexdef(i.indexrelid) ORDER BY 1)
                        FROM pg_index i WHERE i.indrelid = c.oid)
                FROM pg_class c WHERE c.oid = %s::regclass
                """,
                (f'public."{name}"',),
            )
            out[name] = tuple(cur.fetchone())
    conn.close()
    return out


def job_details(url: str, schema: str, restore_id: str) -> dict[str, Any]:
    """The restore job's stored details (not in the API)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT details FROM {} WHERE id = %s").format(
                sql.Identifier(schema, "backup_restores")
            ),
            (restore_id,),
        )
        found = dict(cur.fetchone()[0])
    conn.close()
    return found


def add_patients(url: str, schema: str, n: int) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for i in range(n):
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (first_name, last_name, dni, birth_date) "
                    "VALUES ('Nueva', 'Paciente', %s, '1990-01-01')"
                ).format(sql.Identifier(schema, "patients")),
                (f"N{i:07d}X",),
            )
    conn.close()


class PublicViews:
    """Over a clinic, in `public`, owned by the app role (the clinic tables' owner): a view
    over patients with options (security_barrier, a local check option), a comment and a
    column comment; a view over that view granted to a reporting role (table and column
    grants); a materialized view over the clinic with an index. Dropped with the role."""

    def __init__(self, url: str, schema: str):
        self.url, self.schema = url, schema
        self.active = f"active_{schema}"
        self.summary = f"summary_{schema}"
        self.counts = f"counts_{schema}"
        self.role = f"reporting_{schema}"
        self.names = [self.active, self.summary, self.counts]
        pub = lambda name: sql.Identifier("public", name)  # noqa: E731
        statements = [
            sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.role)),
            sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)),
            sql.SQL(
                "CREATE VIEW {} WITH (security_barrier) AS SELECT id, dni, last_name FROM {} "
                "WHERE birth_date > '1900-01-01' WITH LOCAL CHECK OPTION"
            ).format(pub(self.active), sql.Identifier(schema, "patients")),
            sql.SQL("COMMENT ON VIEW {} IS 'pacientes activos'").format(pub(self.active)),
            sql.SQL("COMMENT ON COLUMN {}.dni IS 'documento'").format(pub(self.active)),
            sql.SQL("CREATE VIEW {} AS SELECT count(*) AS n FROM {}").format(
                pub(self.summary), pub(self.active)
            ),
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                pub(self.summary), sql.Identifier(self.role)
            ),
            sql.SQL("GRANT SELECT (id, dni) ON {} TO {}").format(
                pub(self.active), sql.Identifier(self.role)
            ),
            sql.SQL(
                "CREATE MATERIALIZED VIEW {} AS SELECT p.last_name, count(*) AS n FROM {} p "
                "GROUP BY p.last_name"
            ).format(pub(self.counts), sql.Identifier(schema, "patients")),
            sql.SQL("CREATE INDEX ON {} (last_name)").format(pub(self.counts)),
            sql.SQL("RESET ROLE"),
        ]
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.close()

    def refresh(self) -> None:
        execute(
            self.url,
            sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier("public", self.counts)),
        )

    def total(self) -> int:
        """Patients seen through the view on the view."""
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT n FROM {}").format(sql.Identifier("public", self.summary)))
            found = int(cur.fetchone()[0])
        conn.close()
        return found

    def materialized(self) -> int:
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT sum(n) FROM {}").format(sql.Identifier("public", self.counts))
            )
            found = int(cur.fetchone()[0])
        conn.close()
        return found

    def reporting_can_read(self) -> tuple[bool, bool, bool]:
        """The reporting role: the summary, the active view's dni, its last_name."""
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT'), "
                "has_column_privilege(%s, %s, 'dni', 'SELECT'), "
                "has_column_privilege(%s, %s, 'last_name', 'SELECT')",
                (
                    self.role,
                    f'public."{self.summary}"',
                    self.role,
                    f'public."{self.active}"',
                    self.role,
                    f'public."{self.active}"',
                ),
            )
            found = tuple(cur.fetchone())
        conn.close()
        return found  # type: ignore[return-value]

    def drop(self) -> None:
        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            for name, kind in (
                (self.summary, "VIEW"),
                (self.active, "VIEW"),
                (self.counts, "MATERIALIZED VIEW"),
            ):
                cur.execute(
                    sql.SQL("DROP {} IF EXISTS {}").format(
                        sql.SQL(kind), sql.Identifier("public", name)
                    )
                )
            cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(self.role)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(self.role)))
        conn.close()


def test_public_views_read_the_restored_data_keep_their_grants_and_survive_the_sweep(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.usecases.sweeper import sweep

    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=30)
    views = PublicViews(db.admin_url, schema)
    try:
        # Given views in public over the clinic, a backup, then more patients
        source = backup(schema, sqs)
        add_patients(db.admin_url, schema, 5)
        views.refresh()
        assert views.total() == 35 and views.materialized() == 35
        before = described(db.admin_url, views.names)

        # When the backup is restored
        job = restore(schema, source["id"], restore_sqs)

        # Then the views read the restored data, and are what they were
        assert job["status"] == "completed", job
        assert job_details(db.admin_url, schema, job["id"])["views_recreated"] == 3
        assert views.total() == 30 and views.materialized() == 30
        assert described(db.admin_url, views.names) == before
        assert views.reporting_can_read() == (True, True, False)
        # And nothing outside depends on the kept schema: the sweep drops it, the views stay
        kept = kept_name(db.admin_url, schema, job["id"])
        svc = scheduler_services()
        svc.clock = FixedClock(svc.clock.now() + timedelta(days=3, hours=1))
        report = sweep(svc, [schema], orphans=False)
        assert report.schemas_dropped == 1 and report.schemas_refused == 0
        assert kept not in schemas_like(db.admin_url, schema)
        assert views.total() == 30 and views.materialized() == 30
        assert described(db.admin_url, views.names) == before
    finally:
        views.drop()


def test_an_undo_recreates_the_public_views_over_the_data_from_before(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=30)
    views = PublicViews(db.admin_url, schema)
    try:
        source = backup(schema, sqs)
        add_patients(db.admin_url, schema, 5)
        views.refresh()
        before = described(db.admin_url, views.names)
        job = restore(schema, source["id"], restore_sqs)
        assert job["status"] == "completed", job
        assert views.total() == 30

        # When the restore is undone
        reply = undo(schema, job["id"])
        assert reply.status == 202, reply.body
        restore_sqs.drain_into_worker()

        # Then the views read the data from before the restore, and are what they were
        done = get_restore(schema, job["id"])
        assert done["status"] == "undone", done
        assert job_details(db.admin_url, schema, job["id"])["undo"]["views_recreated"] == 3
        assert views.total() == 35 and views.materialized() == 35
        assert described(db.admin_url, views.names) == before
        assert views.reporting_can_read() == (True, True, False)
    finally:
        views.drop()


def test_a_foreign_key_from_outside_the_clinic_refuses_the_restore_naming_it(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=30)
    source = backup(schema, sqs)
    table = f"claims_{schema}"
    view = f"admin_view_{schema}"
    execute(
        db.admin_url,
        sql.SQL("CREATE TABLE {} (invoice_id bigint REFERENCES {} (id))").format(
            sql.Identifier("public", table), sql.Identifier(schema, "invoices")
        ),
    )
    # and a view the restore role cannot recreate (its owner is not one of its roles)
    execute(
        db.admin_url,
        sql.SQL("CREATE VIEW {} AS SELECT id FROM {}").format(
            sql.Identifier("public", view), sql.Identifier(schema, "staff")
        ),
    )
    try:
        before = checksums(db.admin_url, schema)
        job = restore(schema, source["id"], restore_sqs)
        assert job["status"] == "failed"
        assert job["error_code"] == "outside_dependents"
        assert f"constraint {table}_invoice_id_fkey on table public.{table}" in job["error"], job
        assert (
            f"view public.{view} (cannot be recreated: the restore role is not a member"
            in (job["error"])
        ), job["error"]
        assert "nothing changed" in job["error"]
        # nothing changed: no schema set aside, no pre-restore backup, same data
        assert schemas_like(db.admin_url, schema) == [schema]
        assert job.get("pre_restore_backup_id") is None
        assert checksums(db.admin_url, schema) == before
    finally:
        execute(db.admin_url, sql.SQL("DROP VIEW {}").format(sql.Identifier("public", view)))
        execute(db.admin_url, sql.SQL("DROP TABLE {}").format(sql.Identifier("public", table)))


def test_the_sweeper_does_not_drop_a_kept_schema_something_outside_depends_on(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.usecases.sweeper import sweep

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

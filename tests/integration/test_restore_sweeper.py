"""The sweeper's restore steps: kept schemas are dropped after their undo window — only names
stored in restore jobs and absent from the tenants table, never by pattern — and restore jobs
stuck past the worker's time limit fail, releasing the clinic's lock."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
from psycopg2 import sql

from devstack import clinic_data
from tests.helpers import FixedClock, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import (
    backup,
    lock_rows,
    request_restore,
    restore,
    schemas_like,
    undo,
)


def scheduler_services():
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import SchedulerSettings, get_settings

    return build_services(get_settings(SchedulerSettings))


def kept_name(url: str, schema: str, restore_id: str) -> str:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT old_schema FROM {} WHERE id = %s").format(
                sql.Identifier(schema, "backup_restores")
            ),
            (restore_id,),
        )
        name = cur.fetchone()[0]
    conn.close()
    return str(name)


def test_kept_schemas_are_dropped_after_the_undo_window_and_only_those(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.usecases.sweeper import sweep

    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=50)
    source = backup(schema, sqs)
    first = restore(schema, source["id"], restore_sqs)
    second = restore(schema, source["id"], restore_sqs)
    first_kept = kept_name(db.admin_url, schema, first["id"])
    second_kept = kept_name(db.admin_url, schema, second["id"])
    # a schema that looks like a kept one but no restore job names
    lookalike = f"{schema}__r0123456789"
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(lookalike)))
        # and the second kept name registered as a clinic (it must never be dropped then)
        clinic_data.register_tenant(cur, second_kept, "Not a kept schema any more")
    conn.close()
    try:
        svc = scheduler_services()
        # within the window nothing goes
        report = sweep(svc, [schema], orphans=False)
        assert report.schemas_dropped == 0
        assert set(schemas_like(db.admin_url, schema)) == {
            schema,
            first_kept,
            second_kept,
            lookalike,
        }

        # after it (3 days by default), the first kept schema goes; the others stay
        svc.clock = FixedClock(svc.clock.now() + timedelta(days=3, hours=1))
        report = sweep(svc, [schema], orphans=False)
        assert report.schemas_dropped == 1 and report.errors == 0
        assert set(schemas_like(db.admin_url, schema)) == {schema, second_kept, lookalike}
        # and a second sweep has nothing more to do
        assert sweep(svc, [schema], orphans=False).schemas_dropped == 0
    finally:
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE schema_name = %s").format(
                    sql.Identifier(*clinic_data.TENANTS_TABLE)
                ),
                (second_kept,),
            )
        conn.close()


def test_the_scheduler_drops_an_undone_restores_set_aside_schema(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, monkeypatch
):
    from clinic_backups.usecases.scheduler import run_scheduler

    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=50)
    source = backup(schema, sqs)
    job = restore(schema, source["id"], restore_sqs)
    assert undo(schema, job["id"]).status == 202
    restore_sqs.drain_into_worker()
    assert len(schemas_like(db.admin_url, schema)) == 2  # the restored data, set aside
    svc = scheduler_services()
    svc.clock = FixedClock(svc.clock.now() + timedelta(days=4))
    report = run_scheduler(svc, orphans=False)
    assert report.sweep.schemas_dropped == 1
    assert schemas_like(db.admin_url, schema) == [schema]


def test_a_stuck_restore_job_fails_and_releases_the_lock(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs
):
    from clinic_backups.usecases.sweeper import sweep

    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=50)
    source = backup(schema, sqs)
    accepted = request_restore(schema, source["id"])
    assert accepted.status == 202
    assert lock_rows(db.admin_url, schema) != []
    reset_caches()
    svc = scheduler_services()
    svc.clock = FixedClock(svc.clock.now() + timedelta(hours=2))
    report = sweep(svc, [schema], orphans=False)
    assert report.restores_failed == 1
    assert lock_rows(db.admin_url, schema) == []
    # a late delivery of its message finds nothing to claim
    restore_sqs.drain_into_worker()
    job = svc.restores.get(schema, __import__("uuid").UUID(accepted.body["id"]))
    assert job.status.value == "failed" and job.error_code == "stale"

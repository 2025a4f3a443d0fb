"""Restoring a clinic from one of its backups: the round trip and the undo, on PostgreSQL 15
(the server here) and the embedded PostgreSQL 18, with the roles of a real deployment (the
clinic owned by `clinic_app`, backups as `clinic_backup`, restores as `clinic_restore`)."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests.helpers import call, load_event, mint
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import (
    backup,
    checksums,
    get_backup,
    lock_rows,
    privileges,
    restore,
    schemas_like,
    undo,
)


def change_data(url: str, schema: str) -> None:
    """What a clinic does after its backup: new, changed and removed rows."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        t = {n: sql.Identifier(schema, n) for n in ("patients", "appointments", "invoices")}
        cur.execute(
            sql.SQL(
                "INSERT INTO {patients} (first_name, last_name, dni, birth_date) "
                "SELECT 'Nuevo', 'Paciente ' || i, lpad((900000 + i)::text, 8, '0') || 'X', "
                "date '1990-01-01' FROM generate_series(1, 25) i"
            ).format(**t)
        )
        cur.execute(sql.SQL("UPDATE {patients} SET phone = '600000000' WHERE id <= 40").format(**t))
        cur.execute(
            sql.SQL(
                "DELETE FROM {invoices} WHERE id IN (SELECT id FROM {invoices} LIMIT 5)"
            ).format(**t)
        )
        cur.execute(sql.SQL("UPDATE {appointments} SET status = 'cancelada'").format(**t))
    conn.close()


def stored_bytes(s3_server, bucket: str, schema: str, record: dict) -> bytes:
    """The stored object of a backup, read straight from the S3 server."""
    objects = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")["Contents"]
    match = [o["Key"] for o in objects if o["Key"].endswith(record["file_name"])]
    assert len(match) == 1, match
    return s3_server.client().get_object(Bucket=bucket, Key=match[0])["Body"].read()


def test_restore_brings_back_the_backup_time_state_and_keeps_history_and_grants(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, s3_server, bucket
):
    db = restore_env
    # Given a clinic with a completed backup, and another clinic beside it
    schema = owned_clinic(patients=400)
    other = owned_clinic(patients=150)
    source = backup(schema, sqs, note="antes de los cambios")
    restore_sqs.drain_into_worker()  # the light check after the backup
    at_backup = checksums(db.admin_url, schema)
    grants_before = privileges(db.admin_url, schema)
    other_before = checksums(db.admin_url, other)

    # And the clinic changed its data since
    app_url = db.as_role(demo.APP_ROLE)
    change_data(app_url, schema)
    changed = checksums(db.admin_url, schema)
    assert changed != at_backup

    # When an admin restores the backup
    job = restore(schema, source["id"], restore_sqs)

    # Then the job completed: pre-restore backup, timings, how long the tables were locked
    assert job["status"] == "completed", job
    assert job["step"] == "done" and job["error_code"] is None
    assert job["pre_restore_backup_id"] and job["lock_seconds"] is not None
    assert job["lock_seconds"] > 0 and job["timings"]["restore_seconds"] >= job["lock_seconds"]
    assert set(job["timings"]) >= {"pre_restore_backup_seconds", "check_seconds"}
    assert job["undo_available"] is True and job["undo_until"]

    # And every table equals the backup-time state (rows and sequences)
    assert checksums(db.admin_url, schema) == at_backup
    # And the owner and every grant of the schema, its objects and default privileges
    assert privileges(db.admin_url, schema) == grants_before
    # And the clinic's lock is released, the previous data kept under one stored name
    assert lock_rows(db.admin_url, schema) == []
    assert len(schemas_like(db.admin_url, schema)) == 2

    # And history survives: the backup, the pre-restore backup (completed) and the audit
    pre = get_backup(schema, job["pre_restore_backup_id"])
    assert pre["status"] == "completed" and pre["trigger"] == "pre_restore"
    assert get_backup(schema, source["id"])["table_counts"]["patients"] == 400
    # And the automatic backup is encrypted like every other (its record and its bytes)
    assert pre["encryption"] == "age"
    assert stored_bytes(s3_server, bucket, schema, pre)[:21] == b"age-encryption.org/v1"
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT action, outcome FROM {} ORDER BY at").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        audit = cur.fetchall()
    conn.close()
    assert ("backup.create", "accepted") in audit
    assert ("restore.request", "accepted") in audit
    assert ("restore.run", "completed") in audit

    # And the application role still reads and writes every table; sequences continue
    with psycopg2.connect(app_url) as conn, conn.cursor() as cur:
        for table in ("patients", "appointments", "invoices", "invoice_lines", "staff"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (first_name, last_name, dni, birth_date) "
                "VALUES ('Tras', 'Restaurar', '99999999R', '2000-01-01') RETURNING id"
            ).format(sql.Identifier(schema, "patients"))
        )
        assert cur.fetchone()[0] == 401
        cur.execute(
            sql.SQL("UPDATE {} SET paid = true WHERE id = 1").format(
                sql.Identifier(schema, "invoices")
            )
        )
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE id = 401").format(sql.Identifier(schema, "patients"))
        )
    conn.close()

    # And the backup role still backs the clinic up (its grants came back too)
    again = backup(schema, sqs)
    assert again["status"] == "completed"

    # And the other clinic never changed
    assert checksums(db.admin_url, other) == other_before


def test_undo_brings_back_the_data_from_before_the_restore(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs
):
    db = restore_env
    schema = owned_clinic(patients=200)
    source = backup(schema, sqs)
    change_data(db.as_role(demo.APP_ROLE), schema)
    before_restore = checksums(db.admin_url, schema)
    grants_before = privileges(db.admin_url, schema)
    job = restore(schema, source["id"], restore_sqs)
    assert job["status"] == "completed", job
    assert checksums(db.admin_url, schema) != before_restore

    # When the admin undoes it
    reply = undo(schema, job["id"])
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()

    # Then the data, owners and grants are those from before the restore
    done = call(
        "restore_backup",
        load_event("restore_backup/get_restore.json", token=mint(schema), backup_id=job["id"]),
    ).body
    assert done["status"] == "undone" and done["undone_at"], done
    assert done["undo_available"] is False
    assert checksums(db.admin_url, schema) == before_restore
    assert privileges(db.admin_url, schema) == grants_before
    assert lock_rows(db.admin_url, schema) == []
    # And a second undo is refused
    again = undo(schema, job["id"])
    assert again.status == 409 and again.error_code == "undo_not_available"
    # And backups and restores still work
    assert backup(schema, sqs)["status"] == "completed"
    assert restore(schema, source["id"], restore_sqs)["status"] == "completed"


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_only_the_latest_restore_within_its_window_can_be_undone(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, monkeypatch
):
    schema = owned_clinic(patients=100)
    source = backup(schema, sqs)
    first = restore(schema, source["id"], restore_sqs)
    second = restore(schema, source["id"], restore_sqs)
    assert first["status"] == second["status"] == "completed"
    assert first["id"] != second["id"]

    refused = undo(schema, first["id"])
    assert refused.status == 409 and refused.error_code == "undo_not_available"

    # A restore whose undo window is zero days long can never be undone
    from tests.helpers import reset_caches

    monkeypatch.setenv("RESTORE_UNDO_DAYS", "0")
    reset_caches()
    third = restore(schema, source["id"], restore_sqs)
    assert third["status"] == "completed" and third["undo_available"] is False
    refused = undo(schema, third["id"])
    assert refused.status == 409 and refused.error_code == "undo_not_available"

"""Other sessions during a restore: readers never see a half-restored clinic, and no write is
lost without a trace.

What happens, precisely (docs/restore.md says the same):
- a write committed before the restore locked the clinic's tables is in the pre-restore
  backup and stays in the kept previous schema (until the undo window ends);
- a write that arrives while the tables are locked waits (EXCLUSIVE mode blocks INSERT,
  UPDATE, DELETE, not SELECT) and, once the swap commits, PostgreSQL looks the table name up
  again: it lands in the restored table, with the restored sequence's next id;
- readers read the previous data until the COMMIT and the restored data after it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, checksums, restore

PATIENTS = 20000
ADDED = 500


def count(url: str, schema: str, table: str = "patients") -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
        value = int(cur.fetchone()[0])
    conn.close()
    return value


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_readers_see_before_or_after_and_a_blocked_write_lands_in_the_restored_clinic(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs
):
    db = restore_env
    app_url = db.as_role(demo.APP_ROLE)
    # Given a clinic backed up with 20,000 patients that has 500 more since
    schema = owned_clinic(patients=PATIENTS, note_bytes=200)
    other = owned_clinic(patients=100)
    other_before = checksums(db.admin_url, other)
    source = backup(schema, sqs)
    with psycopg2.connect(app_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (first_name, last_name, dni, birth_date) "
                "SELECT 'Antes', 'Del bloqueo ' || i, lpad((800000 + i)::text, 8, '0') || 'B', "
                "date '1980-01-01' FROM generate_series(1, %s) i"
            ).format(sql.Identifier(schema, "patients")),
            (ADDED,),
        )
        cur.execute("SELECT %s::regclass::oid", (f'"{schema}".patients',))
        patients_oid = cur.fetchone()[0]
    conn.close()

    stop = threading.Event()
    seen: list[int] = []
    wrote: dict[str, Any] = {}

    def reader() -> None:
        conn = psycopg2.connect(app_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "patients"))
                )
                seen.append(int(cur.fetchone()[0]))
        conn.close()

    def writer() -> None:
        watch = psycopg2.connect(db.admin_url)
        watch.autocommit = True
        deadline = time.monotonic() + 120
        with watch.cursor() as cur:
            while time.monotonic() < deadline and not stop.is_set():
                cur.execute(
                    "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.relation = %s AND l.mode = 'ExclusiveLock' AND l.granted "
                    "AND a.application_name = 'clinic-backups-restore'",
                    (patients_oid,),
                )
                if cur.fetchone():
                    break
                time.sleep(0.005)
            else:
                watch.close()
                return
        watch.close()
        conn = psycopg2.connect(app_url)
        conn.autocommit = True
        started = time.monotonic()
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (first_name, last_name, dni, birth_date) VALUES "
                    "('Durante', 'El bloqueo', '77777777D', '1970-01-01') RETURNING id"
                ).format(sql.Identifier(schema, "patients"))
            )
            wrote["id"] = cur.fetchone()[0]
        wrote["waited"] = time.monotonic() - started
        conn.close()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        # When the backup is restored meanwhile
        job = restore(schema, source["id"], restore_sqs)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert job["status"] == "completed", job
    # Then readers saw the clinic before (20,500) or after (20,000, then the blocked write's
    # row) — never anything in between
    before, after = PATIENTS + ADDED, PATIENTS
    assert set(seen) <= {before, after, after + 1}, sorted(set(seen))
    assert before in seen and (after in seen or after + 1 in seen)
    # And the write that met the lock waited for the COMMIT, then landed in the restored
    # table with the restored sequence's next id
    assert "id" in wrote, "the write never met the restore's lock"
    assert wrote["waited"] > 0.01
    assert wrote["id"] == PATIENTS + 1
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE dni = '77777777D'").format(
                sql.Identifier(schema, "patients")
            )
        )
        assert cur.fetchone()[0] == 1
        # And the 500 writes committed before the lock are in the kept previous schema
        cur.execute(
            sql.SQL("SELECT old_schema FROM {} WHERE id = %s").format(
                sql.Identifier(schema, "backup_restores")
            ),
            (job["id"],),
        )
        kept = cur.fetchone()[0]
    conn.close()
    assert count(db.admin_url, kept) == before
    assert count(db.admin_url, schema) == after + 1
    # And the pre-restore backup counted them too
    # (its light check ran on the restore queue after the restore)
    restore_sqs.drain_into_worker()
    from tests.integration.restore_support import get_backup

    assert get_backup(schema, job["pre_restore_backup_id"])["table_counts"]["patients"] == before
    # And another clinic was untouched throughout
    assert checksums(db.admin_url, other) == other_before

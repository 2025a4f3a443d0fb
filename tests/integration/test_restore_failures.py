"""A restore that fails at any step leaves the live clinic exactly as it was (per-table
checksums, owners and grants before and after), its job `failed` with a clear reason, and the
clinic's lock released: a corrupt or tampered object, pg_restore or psql killed mid-way, the
connection dropped, a missing dependency, a broken cross-schema foreign key, a clinic too busy
to lock, a failing pre-restore backup."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests.helpers import reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import (
    backup,
    checksums,
    get_backup,
    lock_rows,
    privileges,
    restore,
    schemas_like,
)

# A stand-in for one of the layer's tools: the real one, except in the situation the test
# sets up. It runs on this interpreter, so it needs nothing from the machine.
WRAPPER = """#!{python}
import os, signal, subprocess, sys, time
REAL = {real!r}
FLAGS = {flags!r}
args = sys.argv[1:]
{body}
"""

# pg_restore writing the full restore's SQL dies (SIGKILL) after some of it.
KILL_PG_RESTORE = """
if "--schema-only" in args or "--data-only" in args or "--version" in args or "--list" in args:
    os.execv(REAL, [REAL, *args])
proc = subprocess.Popen([REAL, *args], stdout=subprocess.PIPE)
sent = 0
while chunk := proc.stdout.read(8192):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    sent += len(chunk)
    if sent > 60000:
        proc.kill()
        os.kill(os.getpid(), signal.SIGKILL)
proc.wait()
sys.exit(proc.returncode)
"""

# psql relays its script; the swap's session (the one that locks: the dry run locks nothing),
# once the archive's SQL has been sent, is either killed (SIGKILL) or stalls until the test
# says go on. Like a real psql, the stand-in ends when psql does (its caller waits for psql's
# markers, so the rest of the script is passed on at once, never held back).
RELAY_PSQL = """
import threading
proc = subprocess.Popen([REAL, *args], stdin=subprocess.PIPE)
threading.Thread(target=lambda: os._exit(proc.wait() % 256), daemon=True).start()
marker = b"\\\\echo cb:loaded"
tail = b""
stopped = False
swap = False

def send(data):
    proc.stdin.write(data)
    proc.stdin.flush()

try:
    while chunk := sys.stdin.buffer.read1(65536):
        data, tail = tail + chunk, b""
        if stopped:
            send(data)
            continue
        swap = swap or b"\\\\echo cb:locked" in data
        at = data.find(marker)
        if at >= 0 and swap:
            send(data[:at])
            stopped = True
            time.sleep(0.3)
            if MODE == "kill":
                proc.kill()
                os.kill(os.getpid(), signal.SIGKILL)
            open(os.path.join(FLAGS, "stalled"), "w").close()
            while not os.path.exists(os.path.join(FLAGS, "resume")):
                time.sleep(0.05)
            send(data[at:])
            continue
        # hold back only bytes that may begin the marker: the layer waits for psql's
        # answers mid-script (the lock phase's snapshot), so nothing else may wait here
        held = next(
            (k for k in range(min(len(marker) - 1, len(data)), 0, -1)
             if marker.startswith(data[-k:])),
            0,
        )
        keep = len(data) - held
        send(data[:keep])
        tail = data[keep:]
    send(tail)
    proc.stdin.close()
except BrokenPipeError:
    pass
sys.exit(proc.wait())
"""


@pytest.fixture
def fake_tool(tmp_path: Path, pg_bin_dir: str, monkeypatch: pytest.MonkeyPatch):
    """Replace one tool of PG_BIN_DIR by a wrapper for one test."""

    def install(tool: str, body: str, **constants: str) -> Path:
        bin_dir = tmp_path / "bin"
        flags = tmp_path / "flags"
        bin_dir.mkdir(exist_ok=True)
        flags.mkdir(exist_ok=True)
        for name in ("pg_dump", "pg_restore", "psql"):
            link = bin_dir / name
            if not link.exists():
                os.symlink(f"{pg_bin_dir}/{name}", link)
        script = bin_dir / tool
        script.unlink()
        preamble = "".join(f"{k} = {v!r}\n" for k, v in constants.items())
        script.write_text(
            WRAPPER.format(
                python=sys.executable,
                real=f"{pg_bin_dir}/{tool}",
                flags=str(flags),
                body=preamble + body,
            )
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
        reset_caches()
        return flags

    return install


class Clinic:
    """A clinic with a completed backup whose data changed since: the state a failed restore
    must leave exactly as it is."""

    def __init__(
        self,
        db: RestoreDatabase,
        owned_clinic: Any,
        sqs: Any,
        patients: int = 400,
        note_bytes: int = 60,
    ):
        self.db = db
        self.schema = owned_clinic(patients=patients, note_bytes=note_bytes)
        self.backup = backup(self.schema, sqs)
        with psycopg2.connect(db.as_role(demo.APP_ROLE)) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("UPDATE {} SET phone = '611111111' WHERE id % 3 = 0").format(
                    sql.Identifier(self.schema, "patients")
                )
            )
        conn.close()
        self.before = checksums(db.admin_url, self.schema)
        self.grants = privileges(db.admin_url, self.schema)

    def assert_untouched(self, job: dict[str, Any], code: str) -> None:
        assert job["status"] == "failed", job
        assert job["error_code"] == code, job
        assert job["error"] and "nothing changed" in job["error"], job
        assert "postgresql://" not in job["error"] and "password" not in job["error"]
        assert checksums(self.db.admin_url, self.schema) == self.before
        assert privileges(self.db.admin_url, self.schema) == self.grants
        assert lock_rows(self.db.admin_url, self.schema) == []
        assert schemas_like(self.db.admin_url, self.schema) == [self.schema]


def s3_object(s3_server: Any, bucket: str, schema: str, backup_id: str) -> str:
    keys = [
        o["Key"]
        for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")["Contents"]
        if o["Key"].endswith((".dump", ".dump.age")) and backup_id[:8] in o["Key"]
    ]
    assert len(keys) == 1
    return keys[0]


def test_a_truncated_object_fails_and_changes_nothing(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, s3_server, bucket
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    key = s3_object(s3_server, bucket, clinic.schema, clinic.backup["id"])
    s3 = s3_server.client()
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=data[: len(data) * 2 // 3])

    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)

    clinic.assert_untouched(job, "checksum_mismatch")
    # found before anything was locked: no pre-restore backup either (it is made under the
    # swap's locks, one per restore that got them)
    assert job["pre_restore_backup_id"] is None


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_a_tampered_object_is_refused_before_the_commit(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, s3_server, bucket
):
    # Given the object replaced by another valid archive of the same clinic (a smaller one):
    # pg_restore reads all of it, only the sha256 tells them apart
    # (large enough that the pre-check would read only the archive's first megabyte)
    clinic = Clinic(restore_env, owned_clinic, sqs, patients=3000, note_bytes=600)
    with psycopg2.connect(restore_env.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE invoice_id > 20").format(
                sql.Identifier(clinic.schema, "invoice_lines")
            )
        )
    conn.close()
    other = backup(clinic.schema, sqs)
    clinic.before = checksums(restore_env.admin_url, clinic.schema)
    s3 = s3_server.client()
    key = s3_object(s3_server, bucket, clinic.schema, clinic.backup["id"])
    other_key = s3_object(s3_server, bucket, clinic.schema, other["id"])
    forged = s3.get_object(Bucket=bucket, Key=other_key)["Body"].read()
    assert len(forged) < clinic.backup["size_bytes"]
    s3.put_object(Bucket=bucket, Key=key, Body=forged)

    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)

    # the whole forged object was read and refused before the clinic's tables were locked
    clinic.assert_untouched(job, "checksum_mismatch")
    assert job["step"] == "verifying"
    assert "sha256" in job["error"] or "bytes" in job["error"]


def test_pg_restore_killed_mid_way_changes_nothing(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, fake_tool
):
    clinic = Clinic(restore_env, owned_clinic, sqs, patients=3000)
    fake_tool("pg_restore", KILL_PG_RESTORE)
    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)
    # an interruption, not a bad archive: a killed tool says nothing about the backup
    clinic.assert_untouched(job, "restore_interrupted")
    assert "pg_restore was killed by SIGKILL" in job["error"]


def test_psql_killed_mid_way_changes_nothing(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, fake_tool
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    fake_tool("psql", RELAY_PSQL, MODE="kill")
    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)
    clinic.assert_untouched(job, "restore_interrupted")
    assert "psql was killed by SIGKILL" in job["error"]


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_the_connection_dropped_mid_way_changes_nothing(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, fake_tool
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    flags = fake_tool("psql", RELAY_PSQL, MODE="stall")
    terminated: list[int] = []

    def drop_the_connection() -> None:
        deadline = time.monotonic() + 60
        while not (flags / "stalled").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with psycopg2.connect(restore_env.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'clinic-backups-restore' AND pid <> pg_backend_pid() "
                # only this test's database: other test runs may share the server
                "AND datname = current_database()"
            )
            terminated.extend(r[0] for r in cur.fetchall())
        conn.close()
        (flags / "resume").touch()

    killer = threading.Thread(target=drop_the_connection)
    killer.start()
    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)
    killer.join()
    assert terminated and all(terminated)
    clinic.assert_untouched(job, "restore_interrupted")


def test_a_missing_type_of_another_schema_is_found_by_the_pre_check(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs
):
    db = restore_env
    schema = owned_clinic(patients=100)
    shared = f"shared_{schema[-6:]}"
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(shared)))
        cur.execute(
            sql.SQL("CREATE TYPE {} AS ENUM ('alta', 'baja')").format(
                sql.Identifier(shared, "priority")
            )
        )
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(shared)))
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN priority {} DEFAULT 'alta'").format(
                sql.Identifier(schema, "appointments"), sql.Identifier(shared, "priority")
            )
        )
    conn.close()
    clinic = Clinic.__new__(Clinic)
    clinic.db, clinic.schema = db, schema
    clinic.backup = backup(schema, sqs)
    # the type is renamed away (the live column keeps it: it refers to it by oid)
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("ALTER TYPE {} RENAME TO priority_v2").format(
                sql.Identifier(shared, "priority")
            )
        )
    conn.close()
    clinic.before = checksums(db.admin_url, schema)
    clinic.grants = privileges(db.admin_url, schema)
    try:
        job = restore(schema, clinic.backup["id"], restore_sqs)
        clinic.assert_untouched(job, "missing_dependency")
        assert "pre-check" in job["error"] and "priority" in job["error"]
        assert "restore_seconds" not in job["timings"]
    finally:
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN priority").format(
                    sql.Identifier(schema, "appointments")
                )
            )
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(shared)))
        conn.close()


def test_a_broken_foreign_key_into_another_schema_rolls_back(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs
):
    # Given clinic notes referring to a shared users table in public (as a Django tenant
    # model may), backed up while user 2 existed
    db = restore_env
    schema = owned_clinic(patients=100)
    users = f"users_{schema[-6:]}"
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(users)))
        cur.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(sql.Identifier(users)))
        cur.execute(
            sql.SQL("GRANT SELECT, REFERENCES ON {} TO {}").format(
                sql.Identifier(users), sql.Identifier(demo.APP_ROLE)
            )
        )
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)))
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (id int PRIMARY KEY, user_id int NOT NULL REFERENCES {} (id), "
                "body text)"
            ).format(sql.Identifier(schema, "notes"), sql.Identifier("public", users))
        )
        cur.execute(
            sql.SQL("INSERT INTO {} VALUES (1, 1, 'a'), (2, 2, 'b')").format(
                sql.Identifier(schema, "notes")
            )
        )
        cur.execute("RESET ROLE")
    conn.close()
    clinic = Clinic.__new__(Clinic)
    clinic.db, clinic.schema = db, schema
    clinic.backup = backup(schema, sqs)
    # And since then note 2 and then user 2 were deleted
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {} WHERE id = 2").format(sql.Identifier(schema, "notes")))
        cur.execute(sql.SQL("DELETE FROM {} WHERE id = 2").format(sql.Identifier(users)))
    conn.close()
    clinic.before = checksums(db.admin_url, schema)
    clinic.grants = privileges(db.admin_url, schema)
    try:
        # When the backup is restored, its note 2 refers to a user that is gone
        job = restore(schema, clinic.backup["id"], restore_sqs)
        # Then the pre-check passed (the table and column exist) and the swap rolled back
        clinic.assert_untouched(job, "restore_failed")
        assert "foreign key" in job["error"]
        assert "check_seconds" in job["timings"]
    finally:
        with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "notes")))
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(users)))
        conn.close()


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_a_session_holding_the_tables_makes_it_fail_as_busy(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, monkeypatch
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    monkeypatch.setenv("RESTORE_LOCK_TIMEOUT", "1s")
    reset_caches()
    # a transaction of the app that wrote and did not commit yet
    blocker = psycopg2.connect(restore_env.as_role(demo.APP_ROLE))
    with blocker.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET paid = NOT paid WHERE id = 1").format(
                sql.Identifier(clinic.schema, "invoices")
            )
        )
    try:
        job = restore(clinic.schema, clinic.backup["id"], restore_sqs)
    finally:
        blocker.rollback()
        blocker.close()
    clinic.assert_untouched(job, "clinic_busy")


@pytest.mark.parametrize("restore_db", ["pg15"], indirect=True)
def test_a_failing_pre_restore_backup_stops_the_restore(
    restore_env: RestoreDatabase, owned_clinic, sqs, restore_sqs, fake_tool
):
    clinic = Clinic(restore_env, owned_clinic, sqs)
    fake_tool(
        "pg_dump",
        'if args and args[0] == "--version":\n    os.execv(REAL, [REAL, *args])\nsys.exit(3)\n',
    )
    job = restore(clinic.schema, clinic.backup["id"], restore_sqs)
    clinic.assert_untouched(job, "pre_restore_backup_failed")
    pre = get_backup(clinic.schema, job["pre_restore_backup_id"])
    assert pre["status"] == "failed" and pre["trigger"] == "pre_restore"

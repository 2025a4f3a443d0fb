"""What a restore checks before it touches the clinic, and the one deadline its phases share.

- The whole stored object is read and checked (sha256 of the stored bytes, age
  authentication, the archive's structure) before the clinic's tables are locked: a damaged
  object fails as `checksum_mismatch` and no table lock is ever asked for.
- The pre-restore backup, the check and the swap share one deadline
  (`RESTORE_TIMEOUT_SECONDS`, below the function's timeout): when it passes the job ends as
  `restore_interrupted`, its lease released, nothing changed — even when each phase alone
  stays within its own limit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from devstack import demo
from tests.helpers import reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.faults import SLOW_START, Source, install_tool
from tests.integration.restore_support import (
    backup,
    checksums,
    lock_rows,
    privileges,
    restore,
    schemas_like,
)


@pytest.fixture
def tools(tmp_path: Path, pg_bin_dir: str, monkeypatch: pytest.MonkeyPatch):
    def install(tool: str, body: str, **constants: Any) -> Path:
        bin_dir, flags = tmp_path / "bin", tmp_path / "flags"
        install_tool(bin_dir, flags, pg_bin_dir, tool, body, **constants)
        monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
        reset_caches()
        return flags

    return install


# pg_restore: the pre-check's (--schema-only) PRE_CHECK seconds late, the swap's load LOAD.
SLOW_RESTORES = """
if "--version" in args or "--list" in args or "--data-only" in args:
    passthrough()
nap(PRE_CHECK if "--schema-only" in args else LOAD)
passthrough()
"""


def stored_key(s3_server: Any, bucket: str, schema: str, backup_id: str) -> str:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    keys = [
        o["Key"]
        for o in listing["Contents"]
        if o["Key"].endswith(".dump.age") and backup_id[:8] in o["Key"]
    ]
    assert len(keys) == 1
    return keys[0]


def assert_untouched(db: RestoreDatabase, schema: str, before: Any, grants: Any) -> None:
    assert checksums(db.admin_url, schema) == before
    assert privileges(db.admin_url, schema) == grants
    assert lock_rows(db.admin_url, schema) == []
    assert schemas_like(db.admin_url, schema) == [schema]


def test_a_damaged_object_fails_as_checksum_mismatch_before_any_table_is_locked(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    s3_server,
    bucket,
    monkeypatch,
):
    # Given a backup whose stored object has one byte changed past its first megabytes (the
    # table of contents reads fine; age's authentication of that chunk fails)
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=5000, note_bytes=800)
    source = backup(schema, sqs)
    key = stored_key(s3_server, bucket, schema, source["id"])
    s3 = s3_server.client()
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert len(data) > 4 * 1024 * 1024
    data[len(data) * 5 // 6] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    before, grants = checksums(db.admin_url, schema), privileges(db.admin_url, schema)
    # and an application transaction holding a write on one of the clinic's tables: a restore
    # that tried to lock the tables would wait for it and fail as clinic_busy
    monkeypatch.setenv("RESTORE_LOCK_TIMEOUT", "2s")
    reset_caches()
    writer = psycopg2.connect(db.as_role(demo.APP_ROLE))
    with writer.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET paid = NOT paid WHERE id = 1").format(
                sql.Identifier(schema, "invoices")
            )
        )
    try:
        # When the restore runs
        job = restore(schema, source["id"], restore_sqs)
    finally:
        writer.rollback()
        writer.close()

    # Then it failed as checksum_mismatch while verifying, before any lock on the tables
    assert (job["status"], job["error_code"]) == ("failed", "checksum_mismatch"), job
    assert job["step"] == "verifying" and "nothing changed" in job["error"]
    assert "verify_seconds" in job["timings"] and "check_seconds" not in job["timings"]
    assert job["lock_seconds"] is None
    assert_untouched(db, schema, before, grants)


@pytest.mark.parametrize("pre_check_seconds", [0, 5])
def test_the_phases_share_one_deadline(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    tools,
    monkeypatch,
    pre_check_seconds: float,
):
    # Given a 10 s restore limit, a pre-restore backup of ~4 s and a swap of ~9 s: each within
    # the limit on its own, not together
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=100)
    source = backup(schema, sqs)
    before, grants = checksums(db.admin_url, schema), privileges(db.admin_url, schema)
    monkeypatch.setenv("RESTORE_TIMEOUT_SECONDS", "10")
    tools("pg_dump", SLOW_START, SECONDS=4, WHEN=Source("lambda args: True"))
    # the swap's load 8 s late; with `pre_check_seconds`, a slow pre-check too (as on a loaded
    # machine), so the limit passes while the swap's session waits for the pre-restore backup,
    # before its load has started
    tools("pg_restore", SLOW_RESTORES, PRE_CHECK=pre_check_seconds, LOAD=8)

    # When the restore runs
    started = time.monotonic()
    job = restore(schema, source["id"], restore_sqs)

    # Then it ended at the deadline, interrupted, its lease released and nothing changed
    assert (job["status"], job["error_code"]) == ("failed", "restore_interrupted"), job
    assert "nothing changed" in job["error"]
    assert "restore_seconds" not in job["timings"]
    assert time.monotonic() - started < 16
    assert_untouched(db, schema, before, grants)

"""Proving backups restorable: the light check after every backup (no database) and the full
drill in a scratch database of a separate verification server (the embedded PostgreSQL 18;
the clinics live on PostgreSQL 15)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from tests.helpers import FixedClock, call, load_event, mint, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, get_backup, get_restore
from tests.integration.test_restore_failures import s3_object


@pytest.fixture
def verify_server(pg18_server: str, monkeypatch: pytest.MonkeyPatch, restore_env_pg15) -> str:
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    return pg18_server


def verify(schema: str, backup_id: str, restore_sqs: Any) -> dict[str, Any]:
    reply = call(
        "restore_backup",
        load_event("restore_backup/post_verify.json", token=mint(schema), backup_id=backup_id),
    )
    assert reply.status == 202, reply.body
    assert reply.body["kind"] == "verify" and reply.body["status"] == "pending"
    restore_sqs.drain_into_worker()
    return get_restore(schema, reply.body["id"])


def scratch_databases(server: str) -> list[str]:
    with psycopg2.connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'verify\\_%'")
        names = [r[0] for r in cur.fetchall()]
    conn.close()
    return names


def test_the_light_check_counts_every_tables_rows_after_each_backup(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, s3_server, bucket
):
    schema = owned_clinic_pg15(patients=250)
    record = backup(schema, sqs)
    assert record["checked_at"] is None  # queued on the restore queue, not run yet
    restore_sqs.drain_into_worker()
    checked = get_backup(schema, record["id"])
    assert checked["check_outcome"] == "passed" and checked["checked_at"]
    assert checked["table_counts"]["patients"] == 250
    assert checked["table_counts"]["appointments"] == 750
    assert "backup_records" not in checked["table_counts"]
    # the manifest beside the archive says the same
    key = s3_object(s3_server, bucket, schema, record["id"])
    manifest = json.loads(
        s3_server.client().get_object(Bucket=bucket, Key=key + ".manifest.json")["Body"].read()
    )
    assert manifest["table_counts"] == checked["table_counts"]
    assert manifest["check_outcome"] == "passed"


def test_the_light_check_fails_on_a_tampered_object(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, s3_server, bucket
):
    schema = owned_clinic_pg15(patients=100)
    record = backup(schema, sqs)
    key = s3_object(s3_server, bucket, schema, record["id"])
    s3 = s3_server.client()
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[-10] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    restore_sqs.drain_into_worker()
    checked = get_backup(schema, record["id"])
    assert checked["check_outcome"] == "failed"
    assert checked["table_counts"] is None and checked["check_error"]


def test_a_full_drill_passes_on_a_good_backup_and_needs_extensions_created_first(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, verify_server
):
    db = restore_env_pg15
    schema = owned_clinic_pg15(patients=300)
    # a column whose type comes from an extension in public (citext)
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS citext")
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN email_ci public.citext").format(
                sql.Identifier(schema, "patients")
            )
        )
        cur.execute(
            sql.SQL("UPDATE {} SET email_ci = upper(email)").format(
                sql.Identifier(schema, "patients")
            )
        )
    conn.close()
    record = backup(schema, sqs)
    restore_sqs.drain_into_worker()

    job = verify(schema, record["id"], restore_sqs)

    assert job["status"] == "completed", job
    assert job["outcome"] == "passed"
    verified = get_backup(schema, record["id"])
    assert verified["verify_outcome"] == "passed" and verified["verified_at"]
    details = verified["verify_details"]
    assert details["table_counts"]["patients"] == 300
    assert details["mismatches"] == {}
    assert details["extensions"] == ["citext"]
    assert details["server_version_num"] >= 180000
    # the scratch database is gone
    assert scratch_databases(verify_server) == []


@pytest.mark.parametrize("how", ["truncated", "tampered"])
def test_a_full_drill_fails_on_a_damaged_object(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    verify_server,
    s3_server,
    bucket,
    how,
):
    schema = owned_clinic_pg15(patients=150)
    record = backup(schema, sqs)
    restore_sqs.drain_into_worker()
    key = s3_object(s3_server, bucket, schema, record["id"])
    s3 = s3_server.client()
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x55
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    job = verify(schema, record["id"], restore_sqs)

    assert job["status"] == "failed" and job["outcome"] == "failed", job
    assert job["error_code"] in ("checksum_mismatch", "archive_invalid"), job
    failed = get_backup(schema, record["id"])
    assert failed["verify_outcome"] == "failed" and failed["verified_at"]
    assert failed["verify_details"]["error_code"] == job["error_code"]
    assert scratch_databases(verify_server) == []


def test_without_a_verification_server_the_drill_is_unavailable(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, monkeypatch
):
    schema = owned_clinic_pg15(patients=50)
    record = backup(schema, sqs)

    def ask() -> Any:
        return call(
            "restore_backup",
            load_event(
                "restore_backup/post_verify.json", token=mint(schema), backup_id=record["id"]
            ),
        )

    reply = ask()
    assert reply.status == 503 and reply.error_code == "verification_unavailable"
    # the clinics' own server is refused unless explicitly allowed
    monkeypatch.setenv("VERIFY_DATABASE_URL", restore_env_pg15.admin_url)
    reset_caches()
    reply = ask()
    assert reply.status == 503 and reply.error_code == "verification_unavailable"
    assert "VERIFY_ALLOW_PRODUCTION_SERVER" in reply.body["error"]["message"]
    monkeypatch.setenv("VERIFY_ALLOW_PRODUCTION_SERVER", "true")
    reset_caches()
    assert ask().status == 202


def test_the_scheduler_queues_a_weekly_drill_of_each_clinics_newest_backup(
    restore_env_pg15: RestoreDatabase, owned_clinic_pg15, sqs, restore_sqs, monkeypatch
):
    import zlib

    from clinic_backups.usecases.restore import HOURS_PER_WEEK, schedule_verifications
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import SchedulerSettings, get_settings

    schema = owned_clinic_pg15(patients=50)
    backup(schema, sqs)
    newest = backup(schema, sqs)
    monkeypatch.setenv("VERIFY_WEEKLY", "true")
    reset_caches()
    svc = build_services(get_settings(SchedulerSettings))
    turn = zlib.crc32(schema.encode()) % HOURS_PER_WEEK
    monday = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, 00:00 UTC
    svc.clock = FixedClock(monday.replace(hour=0))
    from datetime import timedelta

    at_turn = monday + timedelta(hours=turn)
    not_turn = monday + timedelta(hours=(turn + 1) % HOURS_PER_WEEK)
    assert schedule_verifications(svc, [schema], not_turn) == (0, {})
    assert schedule_verifications(svc, [schema], at_turn) == (1, {})
    messages = restore_sqs.receive()
    bodies = [json.loads(m["Body"]) for m in messages]
    verifies = [b for b in bodies if b["kind"] == "verify"]
    assert len(verifies) == 1 and verifies[0]["schema"] == schema
    assert svc.restores is not None
    job = svc.restores.get(schema, __import__("uuid").UUID(verifies[0]["restore_id"]))
    assert job is not None
    assert str(job.backup_id) == newest["id"] and job.requested_by == "scheduler"


def test_a_later_drill_drops_a_scratch_database_a_dead_drill_left_behind(
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    verify_server: str,
):
    # Given two scratch databases nobody uses: one older than a drill can last (its driver and
    # its guardian went down together, with the machine), one a drill may still be using
    admin = psycopg2.connect(verify_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM clock_timestamp())::bigint")
        now = int(cur.fetchone()[0])
        old, recent = f"verify_{now - 3600}_0a0a0a0a", f"verify_{now - 60}_0b0b0b0b"
        for name in (old, recent):
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        schema = owned_clinic_pg15(patients=50)
        record = backup(schema, sqs)
        # When a drill runs
        job = verify(schema, record["id"], restore_sqs)
        # Then it dropped the old one, and only that one
        assert job["status"] == "completed", job
        assert scratch_databases(verify_server) == [recent]
    finally:
        with admin.cursor() as cur:
            for name in (old, recent):
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.close()

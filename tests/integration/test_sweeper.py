"""The sweeper, every case, on real PostgreSQL and SeaweedFS: stuck pending and running backups,
unfinished uploads with and without a running record, the purge, objects without a record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from clinic_backups.domain.models import BackupStatus, Lease, Trigger
from clinic_backups.domain.names import manifest_key
from clinic_backups.edge.cli import main
from clinic_backups.usecases import backups as service
from clinic_backups.usecases import sweeper
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from tests.helpers import FixedClock, encrypted, function_module, invoke, load_event
from tests.integration.test_retention import add_backup

pytestmark = pytest.mark.usefixtures("app_env")

T0 = datetime(2026, 6, 15, 10, tzinfo=UTC)


@pytest.fixture
def svc():
    services = build_services(get_settings(OperatorSettings))
    services.clock = FixedClock(T0)
    return services


def start(svc, schema: str, at: datetime):
    svc.clock.at = at
    return service.start_backup(svc, schema, trigger=Trigger.MANUAL, actor_id="u", actor_name=None)


def test_a_stuck_pending_backup_is_failed_and_its_late_job_never_runs(clinic_factory, svc, sqs):
    # Given a backup queued at T0 whose job has not run an hour later
    schema = clinic_factory()
    record = start(svc, schema, T0)
    svc.clock.at = T0 + timedelta(minutes=59)
    assert sweeper.sweep(svc, [schema]).stale_failed == 0

    # When the sweeper runs after the worker timeout plus the margin (900 s + 45 min)
    svc.clock.at = T0 + timedelta(minutes=61)
    report = sweeper.sweep(svc, [schema])

    # Then the record is failed as stale and the clinic's lock is released
    assert report.stale_failed == 1
    failed = svc.records.get(schema, record.id)
    assert (failed.status, failed.error_code) == (BackupStatus.FAILED, "stale")
    assert failed.error and "never started" in failed.error
    assert start(svc, schema, T0 + timedelta(minutes=62)).status == BackupStatus.PENDING
    # And should its old message still arrive, the worker's claim skips it
    first = json.loads(sqs.receive()[0]["Body"])
    assert first["backup_id"] == str(record.id)
    assert invoke("create_backup", first)["status"] == "skipped"
    assert svc.records.get(schema, record.id).status == BackupStatus.FAILED


def expire_lease(database_url: str, schema: str) -> None:
    """The worker stopped renewing an hour ago (as after a crash), by the database's clock."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET renewed_at = now() - interval '1 hour'").format(
                sql.Identifier(schema, "backup_operation_lock")
            )
        )
    conn.close()


def test_a_running_backup_is_failed_when_its_lease_expires_never_for_its_age(
    clinic_factory, svc, database_url
):
    # Given a backup claimed by a worker (which took the clinic's lease)
    schema = clinic_factory()
    record = start(svc, schema, T0)
    assert svc.records.claim(schema, record.id, T0, Lease.new(120)) is not None
    # When the sweeper runs days later (the worker's clock), the lease is live: untouched
    svc.clock.at = T0 + timedelta(days=3)
    assert sweeper.sweep(svc, [schema]).stale_failed == 0
    assert svc.records.get(schema, record.id).status == BackupStatus.RUNNING
    # When the worker stopped renewing its lease
    expire_lease(database_url, schema)
    svc.clock.at = T0 + timedelta(minutes=1)
    assert sweeper.sweep(svc, [schema]).stale_failed == 1
    failed = svc.records.get(schema, record.id)
    assert failed.error_code == "stale" and "lease" in (failed.error or "")
    assert start(svc, schema, T0 + timedelta(minutes=2)).status == BackupStatus.PENDING


def test_a_running_backup_claimed_before_leases_keeps_the_age_threshold(clinic_factory, svc):
    # (claimed without a lease, as a worker from before the lease migration did)
    schema = clinic_factory()
    record = start(svc, schema, T0)
    svc.records.claim(schema, record.id, T0 + timedelta(minutes=30))  # started 30 min late
    svc.clock.at = T0 + timedelta(minutes=61)
    assert sweeper.sweep(svc, [schema]).stale_failed == 0  # running for 31 min only
    svc.clock.at = T0 + timedelta(minutes=91)
    assert sweeper.sweep(svc, [schema]).stale_failed == 1
    assert svc.records.get(schema, record.id).error_code == "stale"


def create_upload(s3_server, bucket: str, key: str) -> str:
    s3 = s3_server.client()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return upload_id


def open_uploads(s3_server, bucket: str, prefix: str) -> set[str]:
    answer = s3_server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return {u["Key"] for u in answer.get("Uploads", [])}


def test_unfinished_uploads_no_live_job_owns_are_aborted_at_once(
    clinic_factory, svc, s3_server, bucket, database_url
):
    # Given a running backup under a live lease, its unfinished upload, another unfinished
    # upload in the clinic's prefix that no job owns, and one outside any clinic
    schema = clinic_factory()
    now = datetime.now(UTC)
    running = start(svc, schema, now)
    svc.records.claim(schema, running.id, now, Lease.new(120))
    orphan_key = f"{schema}/2026/06/{schema}-crashed.dump"
    for key in (orphan_key, running.storage_key):
        create_upload(s3_server, bucket, key)
    stranger = f"not_a_clinic_{uuid.uuid4().hex[:6]}/x.dump"
    create_upload(s3_server, bucket, stranger)

    # When the sweeper runs (the uploads a minute old: no age threshold)
    svc.clock.at = now + timedelta(minutes=1)
    report = sweeper.sweep(svc, [schema])

    # Then the orphan upload is aborted; the live backup's and the stranger's stay
    assert (report.uploads_aborted, report.uploads_in_flight) == (1, 1)
    assert open_uploads(s3_server, bucket, f"{schema}/") == {running.storage_key}
    assert open_uploads(s3_server, bucket, stranger) == {stranger}

    # And once the backup's worker is dead (its lease expired), its upload goes too
    expire_lease(database_url, schema)
    report = sweeper.sweep(svc, [schema])
    assert (report.stale_failed, report.uploads_aborted) == (1, 1)
    assert open_uploads(s3_server, bucket, f"{schema}/") == set()


def put_objects(svc, schema: str, record) -> None:
    # What a backup stores: age ciphertext and a JSON manifest (the session's scan checks it).
    storage = svc.scoped(schema)
    storage.put_bytes(record.storage_key, encrypted(b"PGDMP archive"), "application/octet-stream")
    storage.put_bytes(manifest_key(record.storage_key), b"{}", "application/json")


def keys(s3_server, bucket: str, schema: str) -> set[str]:
    answer = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    return {o["Key"] for o in answer.get("Contents", [])}


def test_deleted_backups_are_purged_after_the_grace_period(clinic_factory, svc, s3_server, bucket):
    schema = clinic_factory()
    gone, kept = add_backup(svc, schema, T0), add_backup(svc, schema, T0 + timedelta(hours=1))
    for record in (gone, kept):
        put_objects(svc, schema, record)
    svc.records.soft_delete(schema, gone.id, "u-admin", T0 + timedelta(days=1))
    svc.clock.at = T0 + timedelta(days=7, hours=23)
    assert sweeper.sweep(svc, [schema], orphans=False).purged == 0
    svc.clock.at = T0 + timedelta(days=8, hours=1)
    assert sweeper.sweep(svc, [schema], orphans=False).purged == 1
    assert keys(s3_server, bucket, schema) == {kept.storage_key, manifest_key(kept.storage_key)}
    assert svc.records.get(schema, gone.id).purged_at is not None


def test_objects_without_a_record_are_reported_and_kept(clinic_factory, svc, s3_server, bucket):
    # Given a backup with its objects, and a stray object no record names
    schema = clinic_factory()
    record = add_backup(svc, schema, T0)
    put_objects(svc, schema, record)
    stray = f"{schema}/2026/06/{schema}-20260615T000000Z-deadbeef.dump"
    svc.scoped(schema).put_bytes(stray, encrypted(b"who made me?"), "application/octet-stream")

    # When the sweeper runs (a young object may still be getting its record: not yet)
    svc.clock.at = datetime.now(UTC) + timedelta(minutes=10)
    assert sweeper.sweep(svc, [schema]).orphans == {}
    svc.clock.at = datetime.now(UTC) + timedelta(hours=2)
    report = sweeper.sweep(svc, [schema])

    # Then only the stray is reported, and nothing is deleted
    assert report.orphans == {schema: [stray]} and report.orphan_count == 1
    assert keys(s3_server, bucket, schema) == {
        record.storage_key,
        manifest_key(record.storage_key),
        stray,
    }


def test_the_operator_cli_runs_the_sweeper(clinic_factory, capsys, monkeypatch):
    schema = clinic_factory()
    svc = build_services(get_settings(OperatorSettings))
    svc.records.ensure_schema(schema)
    stray = f"{schema}/stray.bin"
    svc.scoped(schema).put_bytes(stray, encrypted(b"x"), "application/octet-stream")
    monkeypatch.setattr(sweeper, "ORPHAN_MIN_AGE", timedelta(0))
    assert main(["sweep", schema]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["orphans"] == {schema: [stray]} and out["errors"] == 0
    assert main(["sweep", "no_such_clinic"]) == 2


def test_the_scheduler_run_sweeps_the_clinics_that_need_it(clinic_factory, s3_server, bucket):
    # Given a deleted backup past its grace period and an old crashed upload
    schema = clinic_factory()
    scheduler = function_module("scheduler").fn.services()
    deleted = add_backup(scheduler, schema, T0)
    put_objects(scheduler, schema, deleted)
    scheduler.records.soft_delete(schema, deleted.id, "u-admin", T0)
    create_upload(s3_server, bucket, f"{schema}/2026/06/crashed.dump")

    # When the hourly run comes two hours (and more than the grace period) later
    scheduler.clock = FixedClock(
        max(datetime.now(UTC), T0 + timedelta(days=8)) + timedelta(hours=2)
    )
    report = invoke("scheduler", load_event("scheduler/scheduled_event.json"))

    # Then it purged and aborted
    assert report["sweep"]["purged"] == 1 and report["sweep"]["uploads_aborted"] == 1
    assert keys(s3_server, bucket, schema) == set()
    assert open_uploads(s3_server, bucket, f"{schema}/") == set()

"""Issue 24: the independent immutable replica (3-2-1). A second SeaweedFS holds a versioned,
object-locked bucket (compliance mode); every completed backup is copied there by a queue job,
checked (sha256 read back), locked until the end of the longest tier it can be kept under, and
the lock extended when it is kept. With the primary's object gone or damaged, download, verify
and restore read the replica; the purge leaves a copy whose lock still holds.

Real PostgreSQL 15 (clinics) and 18 (the drill), two real SeaweedFS servers, moto's SQS.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg2
import pytest
from botocore.exceptions import ClientError
from clinic_backups.domain.models import BackupRecord
from clinic_backups.domain.names import MANIFEST_SUFFIX
from clinic_backups.domain.ports import SchedulesRepository, SnapshotWindow
from clinic_backups.domain.retention import RetentionPolicy, lock_horizon
from clinic_backups.usecases import backups as service
from clinic_backups.usecases import sweeper
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from devstack import demo
from tests import helpers, invariants
from tests.helpers import call, load_event, mint, register_clinic_key, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, checksums, get_backup, restore
from tests.integration.test_verify import verify

AGE_HEADER = b"age-encryption.org/v1"
KEEP_LOCK_DAYS = 2190


@pytest.fixture(scope="module")
def replica_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with helpers.seaweed(tmp_path_factory.mktemp("weed-replica")) as server:
        yield server


@pytest.fixture(scope="module")
def replica_bucket(replica_server: Any) -> Iterator[str]:
    """Created with Object Lock (hence versioned). Scanned at the end like the primary: only
    age ciphertext and manifests may be in it."""
    name = "replica"
    replica_server.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    helpers.check_every_object(replica_server.client(), "replica SeaweedFS")


@pytest.fixture
def replica_env(
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    replica_server: Any,
    replica_bucket: str,
) -> Any:
    """The functions with the replica configured (its own endpoint and keys)."""
    for name, value in {
        "REPLICA_BUCKET": replica_bucket,
        "REPLICA_S3_ENDPOINT_URL": replica_server.endpoint_url,
        "REPLICA_S3_ACCESS_KEY_ID": replica_server.access_key,
        "REPLICA_S3_SECRET_ACCESS_KEY": replica_server.secret_key,
        "REPLICA_REGION": replica_server.region,
        "REPLICA_KEEP_LOCK_DAYS": str(KEEP_LOCK_DAYS),
    }.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    return replica_server


def _record(schema: str, backup_id: str) -> BackupRecord:
    svc = build_services(get_settings(OperatorSettings))
    record = svc.records.get(schema, uuid.UUID(backup_id))
    assert record is not None
    return record


def _objects(server: Any, bucket: str, schema: str) -> dict[str, bytes]:
    s3 = server.client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{schema}/").get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _versions(server: Any, bucket: str, schema: str) -> list[str]:
    listed = server.client().list_object_versions(Bucket=bucket, Prefix=f"{schema}/")
    return sorted(v["Key"] for v in listed.get("Versions", []))


def _retention(server: Any, bucket: str, key: str) -> dict[str, Any]:
    return dict(server.client().get_object_retention(Bucket=bucket, Key=key)["Retention"])


def add_scans(url: str, schema: str, rows: int, owner: str | None = None) -> None:
    """Incompressible rows (1 MB each), so the archive has a known size."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        if owner:
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        table = sql.Identifier(schema, "scans")
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, data bytea)").format(table))
        for row in range(rows):
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table),
                (row, psycopg2.Binary(os.urandom(1_000_000))),
            )
    conn.close()


def test_seaweedfs_refuses_to_delete_or_shorten_a_locked_version_and_allows_extending_it(
    replica_server: Any, replica_bucket: str
) -> None:
    # Given an object stored under a compliance-mode lock in the versioned bucket
    s3 = replica_server.client()
    key = f"probe_{uuid.uuid4().hex[:8]}/x.age"
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    put = s3.put_object(
        Bucket=replica_bucket,
        Key=key,
        Body=AGE_HEADER + b"\nprobe",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    version = put["VersionId"]

    # When its version is deleted, in one call or a batch, or its lock shortened
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=replica_bucket, Key=key, VersionId=version)
    batch = s3.delete_objects(
        Bucket=replica_bucket, Delete={"Objects": [{"Key": key, "VersionId": version}]}
    )
    with pytest.raises(ClientError) as shortened:
        s3.put_object_retention(
            Bucket=replica_bucket,
            Key=key,
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(hours=1)},
        )

    # Then each is refused (403 AccessDenied) and the version is still there
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
    assert shortened.value.response["Error"]["Code"] == "AccessDenied"
    body = s3.get_object(Bucket=replica_bucket, Key=key, VersionId=version)["Body"].read()
    assert body == AGE_HEADER + b"\nprobe"

    # A plain delete only hides it behind a delete marker: the locked version stays readable
    assert s3.delete_object(Bucket=replica_bucket, Key=key)["DeleteMarker"] is True
    body = s3.get_object(Bucket=replica_bucket, Key=key, VersionId=version)["Body"].read()
    assert body.startswith(AGE_HEADER)

    # And a lock can be extended (what a promotion does)
    later = until + timedelta(days=30)
    s3.put_object_retention(
        Bucket=replica_bucket,
        Key=key,
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later},
    )
    held = s3.get_object_retention(Bucket=replica_bucket, Key=key, VersionId=version)
    assert held["Retention"]["RetainUntilDate"] == later

    # A bucket created without Object Lock takes no lock at all (the replica needs one)
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=plain)
    with pytest.raises(ClientError) as unlockable:
        s3.put_object(
            Bucket=plain,
            Key="x",
            Body=AGE_HEADER,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
        )
    assert unlockable.value.response["Error"]["Code"] == "InvalidRequest"
    s3.delete_bucket(Bucket=plain)


def test_each_completed_backup_is_copied_checked_and_locked_and_keep_extends_the_lock(
    replica_env: Any,
    replica_bucket: str,
    clinic_factory: Any,
    database_url: str,
    sqs: Any,
    restore_sqs: Any,
    s3_server: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a clinic whose archive is stored as parts (a 1 MB object limit)
    monkeypatch.setenv("STORAGE_MAX_OBJECT_MB", "1")
    reset_caches()
    schema = clinic_factory(patients=20)
    add_scans(database_url, schema, 2)
    register_clinic_key(schema)

    # When it is backed up and the restore queue runs (light check, replica copy)
    done = backup(schema, sqs)
    assert _record(schema, done["id"]).replicated_at is None
    restore_sqs.drain_into_worker()

    # Then every object of the backup (each part and the manifest) is in the replica, byte
    # for byte, under the clinic's prefix, and the record says it was copied
    record = _record(schema, done["id"])
    assert record.parts is not None and len(record.parts) >= 2
    primary = _objects(s3_server, bucket, schema)
    copied = _objects(replica_env, replica_bucket, schema)
    assert copied == primary
    assert len(copied) == len(record.parts) + 1
    for part in record.parts:
        assert hashlib.sha256(copied[part["key"]]).hexdigest() == part["sha256"]
    assert record.replicated_at is not None
    # and the API says so, for the clinic's history («Copia independiente … protegida hasta …»)
    assert done["replicated_at"] is None and done["replica_retain_until"] is None
    shown = get_backup(schema, done["id"])
    assert record.replica_retain_until is not None
    assert shown["replicated_at"] == record.replicated_at.isoformat()
    assert shown["replica_retain_until"] == record.replica_retain_until.isoformat()
    assert "primary_damaged_at" not in shown  # an operator fact
    me = call("list_backups", load_event("list_backups/get_me.json", token=mint(schema)))
    assert me.status == 200 and me.body["replica_configured"] is True
    # and each copy is locked (compliance) until the end of the longest tier: a manual
    # backup under the default policy (6 monthly tiers of at most 31 days)
    policy = RetentionPolicy(
        keep_daily=7, keep_weekly=4, keep_monthly=6, min_retention_days=7, restore_undo_days=3
    )
    horizon = lock_horizon(record, policy, KEEP_LOCK_DAYS)
    assert horizon == record.created_at + timedelta(days=186)
    assert record.replica_retain_until == horizon
    for key in copied:
        held = _retention(replica_env, replica_bucket, key)
        assert held["Mode"] == "COMPLIANCE"
        assert abs(held["RetainUntilDate"] - horizon) < timedelta(seconds=1)

    # When an admin marks it to keep
    reply = call(
        "delete_backup",
        load_event(
            "delete_backup/patch_backup.json",
            token=mint(schema),
            backup_id=done["id"],
            body={"keep": True},
        ),
    )
    assert reply.status == 200, reply.body

    # Then the lock of every copy is extended to REPLICA_KEEP_LOCK_DAYS after the backup
    kept = _record(schema, done["id"])
    expected = record.created_at + timedelta(days=KEEP_LOCK_DAYS)
    assert kept.replica_retain_until == expected
    for key in copied:
        held = _retention(replica_env, replica_bucket, key)
        assert abs(held["RetainUntilDate"] - expected) < timedelta(seconds=1)

    # A second delivery of the job copies nothing again (one version per object)
    restore_sqs.send({"kind": "replicate", "schema": schema, "backup_id": done["id"]})
    restore_sqs.drain_into_worker()
    assert _versions(replica_env, replica_bucket, schema) == sorted(copied)


def test_with_the_primary_copy_damaged_or_gone_download_verify_and_restore_use_the_replica(
    replica_env: Any,
    replica_bucket: str,
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15: Any,
    sqs: Any,
    restore_sqs: Any,
    pg18_server: str,
    s3_server: Any,
    bucket: str,
    logs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    # Given a completed, replicated backup of a clinic
    schema = owned_clinic_pg15(patients=80)
    register_clinic_key(schema)
    before = checksums(restore_env_pg15.admin_url, schema)
    done = backup(schema, sqs)
    restore_sqs.drain_into_worker()
    assert _record(schema, done["id"]).replicated_at is not None
    s3 = s3_server.client()
    (key,) = [k for k in _objects(s3_server, bucket, schema) if not k.endswith(MANIFEST_SUFFIX)]

    # When the primary's object is damaged (cut short) behind the product's back
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original[:-100])
    token = mint(schema)
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )

    # Then the download is signed by the replica's store, and delivers the exact file
    assert reply.status == 200, reply.body
    url = reply.body["url"]
    assert url.startswith(f"{replica_env.endpoint_url}/{replica_bucket}/")
    fetched = httpx.get(url, timeout=60)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == done["sha256"]
    # and the use of the replica is logged (never the URL) and audited
    assert "reading the backup from the replica" in logs.text
    assert url not in logs.text and "X-Amz-Signature" not in logs.text

    # When the primary store does not answer at all (a deleted project), the replica serves
    endpoint = os.environ["S3_ENDPOINT_URL"]
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:1")
    reset_caches()
    down = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    assert down.status == 200, down.body
    assert down.body["url"].startswith(f"{replica_env.endpoint_url}/{replica_bucket}/")
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    reset_caches()

    # When the object is gone altogether and the clinic verifies, then restores the backup
    s3.delete_object(Bucket=bucket, Key=key)
    job = verify(schema, done["id"], restore_sqs)
    assert (job["status"], job["outcome"]) == ("completed", "passed"), job
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)))
        cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "invoice_lines")))
    conn.close()
    assert checksums(restore_env_pg15.admin_url, schema) != before
    restored = restore(schema, done["id"], restore_sqs)

    # Then both ran from the replica's copy: the clinic is exactly as it was backed up
    assert restored["status"] == "completed", restored
    assert checksums(restore_env_pg15.admin_url, schema) == before
    audit = _audit_actions(restore_env_pg15.admin_url, schema, done["id"])
    assert audit.count(("backup.replica_read", "used")) >= 3
    # and the record was never marked missing: a copy existed all along
    assert _record(schema, done["id"]).file_missing_at is None

    # When the primary's object is back but damaged without a change of size (one byte)
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)))
        cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "invoice_lines")))
    conn.close()
    again = restore(schema, done["id"], restore_sqs)

    # Then the restore's check finds the mismatch, marks the primary damaged and restores
    # from the replica
    assert again["status"] == "completed", again
    assert checksums(restore_env_pg15.admin_url, schema) == before
    assert _record(schema, done["id"]).primary_damaged_at is not None
    # and so does a drill that meets the damage first (the mark cleared to start afresh)
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET primary_damaged_at = NULL WHERE id = %s").format(
                sql.Identifier(schema, "backup_records")
            ),
            (done["id"],),
        )
    conn.close()
    drill = verify(schema, done["id"], restore_sqs)
    assert (drill["status"], drill["outcome"]) == ("completed", "passed"), drill
    assert _record(schema, done["id"]).primary_damaged_at is not None
    assert "the primary copy does not match its sha256" in logs.text
    # and from then on a download is the replica's too (a signed URL cannot check a sha256)
    signed = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    assert signed.status == 200 and signed.body["url"].startswith(replica_env.endpoint_url)

    # Without the replica configured, the same backup (its file gone) is 410
    s3.delete_object(Bucket=bucket, Key=key)
    monkeypatch.delenv("REPLICA_BUCKET")
    reset_caches()
    missing = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    assert missing.status == 410 and missing.error_code == "backup_file_missing"
    # (and /me tells the UI there is no replica to speak of)
    me = call("list_backups", load_event("list_backups/get_me.json", token=token))
    assert me.status == 200 and me.body["replica_configured"] is False


def _audit_actions(url: str, schema: str, backup_id: str) -> list[tuple[str, str]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT action, outcome FROM {} WHERE backup_id = %s ORDER BY at").format(
                sql.Identifier(schema, "backup_audit")
            ),
            (backup_id,),
        )
        rows = [(str(a), str(o)) for a, o in cur.fetchall()]
    conn.close()
    return rows


def test_the_purge_leaves_a_locked_replica_copy_and_removes_an_unlocked_one(
    replica_env: Any,
    replica_bucket: str,
    clinic_factory: Any,
    sqs: Any,
    restore_sqs: Any,
    s3_server: Any,
    bucket: str,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a replicated backup (locked) that the clinic deletes
    schema = clinic_factory(patients=10)
    register_clinic_key(schema)
    locked = backup(schema, sqs)
    restore_sqs.drain_into_worker()
    copies = _versions(replica_env, replica_bucket, schema)
    assert len(copies) == 2
    deleted = call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=mint(schema), backup_id=locked["id"]),
    )
    assert deleted.status == 204
    # the soft delete leaves the replica alone
    assert _versions(replica_env, replica_bucket, schema) == copies

    # When the grace period has passed and the purge runs
    svc = build_services(get_settings(OperatorSettings))
    later = datetime.now(UTC) + timedelta(days=8)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert service.purge_deleted(svc, schema) == 1

    # Then the primary's objects are gone, the replica's locked copy stays, and the record
    # says so (purged, still replicated: a later sweep tries again)
    assert _objects(s3_server, bucket, schema) == {}
    assert _versions(replica_env, replica_bucket, schema) == copies
    record = _record(schema, locked["id"])
    assert record.purged_at is not None and record.replicated_at is not None
    # and the scheduler does not come back for it while the lock holds
    window = SnapshotWindow(
        slots_since=later - timedelta(hours=8),
        stuck_before=later - timedelta(hours=1),
        deleted_before=later - timedelta(days=7),
    )
    assert schedules(svc).snapshot([schema], window)[schema].purgeable is False

    # Even when the record believes the lock has expired, the store's refusal is respected
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET replica_retain_until = now() - interval '1 day'").format(
                sql.Identifier(schema, "backup_records")
            )
        )
    assert schedules(svc).snapshot([schema], window)[schema].purgeable is True
    assert service.purge_deleted(svc, schema) == 0
    assert _versions(replica_env, replica_bucket, schema) == copies
    assert _record(schema, locked["id"]).replicated_at is not None

    # Given a replica without Object Lock, a purged backup's copy (every version) goes
    monkeypatch.setenv("REPLICA_OBJECT_LOCK", "off")
    reset_caches()
    unlocked = backup(schema, sqs)
    restore_sqs.drain_into_worker()
    fresh = [k for k in _versions(replica_env, replica_bucket, schema) if k not in copies]
    assert len(fresh) == 2
    call(
        "delete_backup",
        load_event(
            "delete_backup/delete_backup.json", token=mint(schema), backup_id=unlocked["id"]
        ),
    )
    svc = build_services(get_settings(OperatorSettings))
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert service.purge_deleted(svc, schema) == 1
    assert _versions(replica_env, replica_bucket, schema) == copies
    assert _record(schema, unlocked["id"]).replicated_at is None


class _Metrics:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def add(self, name: str, value: float, unit: str) -> None:
        self.seen[name] = self.seen.get(name, 0) + value


def test_completed_backups_not_replicated_in_time_are_counted_for_the_lag_alarm(
    replica_env: Any, clinic_factory: Any, sqs: Any, restore_sqs: Any
) -> None:
    # Given a completed backup whose replica copy has not run (the restore queue not drained)
    schema = clinic_factory(patients=5)
    register_clinic_key(schema)
    done = backup(schema, sqs)
    svc = build_services(get_settings(OperatorSettings))
    svc.metrics = _Metrics()
    later = datetime.now(UTC) + timedelta(minutes=svc.config.replica_lag_minutes + 5)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    window = SnapshotWindow(
        slots_since=later - timedelta(hours=8),
        stuck_before=later - timedelta(hours=1),
        deleted_before=later - timedelta(days=7),
    )

    # When the sweeper and the scheduler's fleet read look past REPLICA_LAG_MINUTES
    report = sweeper.sweep(svc, [schema], orphans=False)
    snap = schedules(svc).snapshot(
        [schema],
        replace(
            window, replica_lag_before=later - timedelta(minutes=svc.config.replica_lag_minutes)
        ),
    )[schema]

    # Then the backup is counted as lagging, and the metric the alarm watches says so
    assert report.replica_lagging == 1 and snap.replica_lagging == 1
    assert svc.metrics.seen["ReplicaLagging"] == 1
    # (without a replica the fleet read counts nothing)
    assert schedules(svc).snapshot([schema], window)[schema].replica_lagging == 0

    # When the copy runs, nothing lags any more
    restore_sqs.drain_into_worker()
    assert _record(schema, done["id"]).replicated_at is not None
    svc.metrics = _Metrics()
    assert sweeper.sweep(svc, [schema], orphans=False).replica_lagging == 0
    assert svc.metrics.seen["ReplicaLagging"] == 0


def _superseded(db: Any, schema: str) -> list[tuple[list[str], datetime | None]]:
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT keys, retain_until FROM {} ORDER BY superseded_at").format(
                sql.Identifier(schema, "backup_replica_superseded")
            )
        )
        return [(sorted(keys), until) for keys, until in cur.fetchall()]


def test_a_reencrypted_backups_old_replica_copy_stays_while_locked_and_goes_after_its_date(
    replica_env: Any,
    replica_bucket: str,
    clinic_factory: Any,
    sqs: Any,
    restore_sqs: Any,
    db: Any,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clinic_backups.usecases import replica

    # Given a replicated backup made before the clinic had a key, its copy locked for a few
    # seconds (the real store's lock must pass within the test)
    schema = clinic_factory(patients=10)
    short = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    with monkeypatch.context() as patch:
        patch.setattr(replica, "retain_until", lambda svc, schema, record: short)
        old = backup(schema, sqs)
        restore_sqs.drain_into_worker()
    old_copies = _versions(replica_env, replica_bucket, schema)
    assert len(old_copies) == 2
    assert _record(schema, old["id"]).replica_retain_until == short

    # When the clinic registers a key and the backup is re-encrypted (then copied again)
    register_clinic_key(schema)
    reply = call(
        "encryption_keys",
        load_event("encryption_keys/post_reencrypt.json", token=mint(schema), backup_id=old["id"]),
    )
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()

    # Then the record points at the new generation, copied and locked for its full horizon,
    # and the old generation's copies are remembered with the lock they carry
    record = _record(schema, old["id"])
    assert record.file_name.endswith("-g1.dump.age") and record.replicated_at is not None
    assert record.replica_retain_until is not None and record.replica_retain_until > short
    every = _versions(replica_env, replica_bucket, schema)
    assert len(every) == 4 and set(old_copies) < set(every)
    assert _superseded(db, schema) == [(old_copies, short)]

    # When the purge runs while their date has not come: the store is not even asked
    svc = build_services(get_settings(OperatorSettings))
    before = short - timedelta(seconds=1)
    svc.clock = type("Before", (), {"now": staticmethod(lambda: before)})()
    service.purge_deleted(svc, schema)
    assert _versions(replica_env, replica_bucket, schema) == every
    assert len(_superseded(db, schema)) == 1

    # When the date has passed (the store's own lock too) and the purge runs again
    while datetime.now(UTC) <= short + timedelta(seconds=1):
        time.sleep(0.2)
    window = SnapshotWindow(
        slots_since=datetime.now(UTC) - timedelta(hours=8),
        stuck_before=datetime.now(UTC) - timedelta(hours=1),
        deleted_before=datetime.now(UTC) - timedelta(days=7),
    )
    assert schedules(svc).snapshot([schema], window)[schema].purgeable is True
    svc.clock = type("Now", (), {"now": staticmethod(lambda: datetime.now(UTC))})()
    service.purge_deleted(svc, schema)

    # Then every version of the old generation is gone, the new one untouched, the row
    # forgotten and the removal audited
    assert _versions(replica_env, replica_bucket, schema) == sorted(set(every) - set(old_copies))
    assert _superseded(db, schema) == []
    assert schedules(svc).snapshot([schema], window)[schema].purgeable is False
    audit = _audit_actions(database_url, schema, old["id"])
    assert ("backup.purge", "replica_superseded_purged") in audit

    # A remembered copy the store still holds locked (its record's date wrong) is refused
    # and kept for a later sweep, like a purged backup's copy
    held = f"{schema}/held-{uuid.uuid4().hex[:8]}.dump.age"
    replica_env.client().put_object(
        Bucket=replica_bucket,
        Key=held,
        Body=AGE_HEADER + b"\nheld",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
    )
    svc.records.remember_superseded(
        schema, record.id, [held], datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
    )
    service.purge_deleted(svc, schema)
    assert held in _versions(replica_env, replica_bucket, schema)
    assert [keys for keys, _ in _superseded(db, schema)] == [[held]]


def test_the_invariant_scan_reads_every_version_of_a_versioned_bucket(
    replica_server: Any,
) -> None:
    # Given a versioned bucket where a plaintext archive was overwritten by ciphertext, and
    # another hidden behind a delete marker (both still readable by version id)
    s3 = replica_server.client()
    name = f"versions-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    try:
        s3.put_object(Bucket=name, Key="c/a.dump.age", Body=b"PGDMP\x01\x0e\x00plain")
        s3.put_object(Bucket=name, Key="c/a.dump.age", Body=AGE_HEADER + b"\nnow encrypted")
        s3.put_object(Bucket=name, Key="c/b.dump.age", Body=b"plaintext")
        s3.delete_object(Bucket=name, Key="c/b.dump.age")
        s3.put_object(Bucket=name, Key="c/a.dump.age.manifest.json", Body=b'{"ok": 1}')

        # When the bucket is scanned
        report = invariants.scan_bucket(s3, name)

        # Then both hidden plaintexts are findings (the current ciphertext passes)
        assert report.objects == 4 and report.manifests == 1 and report.archives == 1
        assert len(report.findings) == 2
        assert any("c/a.dump.age (older version" in f and "pg_dump" in f for f in report.findings)
        assert any("c/b.dump.age (older version" in f for f in report.findings)
    finally:
        listed = s3.list_object_versions(Bucket=name)
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
        ]
        s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=name)


def test_a_copy_made_while_a_reencryption_replaced_the_objects_is_remembered_not_marked(
    replica_env: Any,
    replica_bucket: str,
    clinic_factory: Any,
    sqs: Any,
    restore_sqs: Any,
    s3_server: Any,
    bucket: str,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clinic_backups.domain.models import ReplicateJob
    from clinic_backups.usecases import replica

    # Given a backup re-encrypted before its replica copy ran (no replica while it happened)
    monkeypatch.delenv("REPLICA_BUCKET")
    reset_caches()
    schema = clinic_factory(patients=5)
    old = backup(schema, sqs)
    restore_sqs.drain_into_worker()
    stale = _record(schema, old["id"])
    old_objects = _objects(s3_server, bucket, schema)
    register_clinic_key(schema)
    reply = call(
        "encryption_keys",
        load_event("encryption_keys/post_reencrypt.json", token=mint(schema), backup_id=old["id"]),
    )
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()
    assert _record(schema, old["id"]).storage_key != stale.storage_key
    # (the old objects still readable, as they are while the re-encryption runs)
    for key, data in old_objects.items():
        s3_server.client().put_object(Bucket=bucket, Key=key, Body=data)

    # When a replicate job that read the record before the re-encryption copies them
    monkeypatch.setenv("REPLICA_BUCKET", replica_bucket)
    reset_caches()
    svc = build_services(get_settings(OperatorSettings))
    current_get = svc.records.get
    reads = iter([stale])
    monkeypatch.setattr(svc.records, "get", lambda s, i: next(reads, None) or current_get(s, i))
    done = replica.run_replicate_job(
        svc, ReplicateJob(kind="replicate", schema=schema, backup_id=stale.id)
    )

    # Then the record (now the new generation) is not marked as copied, and the copies of the
    # old objects are remembered for the purge with their lock
    assert done is None
    assert _record(schema, old["id"]).replicated_at is None
    assert _versions(replica_env, replica_bucket, schema) == sorted(old_objects)
    ((keys, until),) = _superseded(db, schema)
    assert keys == sorted(old_objects) and until is not None


def schedules(svc: Services) -> SchedulesRepository:
    assert svc.schedules is not None
    return svc.schedules

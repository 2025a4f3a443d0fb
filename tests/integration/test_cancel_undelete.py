"""Undelete within the grace period, and cancel a pending or running backup (issue 21).

- A deleted backup says when it will be purged (`purge_after`); within that time
  `POST /backups/{id}/undelete` makes it `completed` again (its manifest too) and it downloads
  as before; past it, or once purged, 409 `backup_purged`.
- `POST /backups/{id}/cancel`: a pending backup ends `cancelled` at once and frees the
  clinic; a running one (here: mid-upload, its pg_dump stalled after the first part) is told
  through its lease heartbeat, kills pg_dump, aborts the multipart upload and ends
  `cancelled` with nothing in the bucket. A cancelled manual backup still counts toward the
  daily quota. Staff may cancel only their own backups; another clinic's id is a 404.

Real PostgreSQL and SeaweedFS; the handlers are called in-process with the sample events.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from clinic_backups.domain.errors import BackupCancelled
from clinic_backups.domain.models import DumpResult, Lease
from clinic_backups.domain.names import manifest_key
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import DeleteBackupSettings, get_settings
from psycopg2 import sql

from tests.helpers import (
    FixedClock,
    Reply,
    call,
    load_event,
    mint,
    register_clinic_key,
    reset_caches,
)
from tests.integration.faults import DUMP_THEN_STALL, install_tool, wait_until

LEASE = 3


def create(token: str) -> Reply:
    return call("create_backup", load_event("create_backup/post_backups.json", token=token))


def cancel(token: str, backup_id: str) -> Reply:
    return call(
        "create_backup",
        load_event("create_backup/post_cancel.json", token=token, backup_id=backup_id),
    )


def undelete(token: str, backup_id: str) -> Reply:
    return call(
        "delete_backup",
        load_event("delete_backup/post_undelete.json", token=token, backup_id=backup_id),
    )


def delete(token: str, backup_id: str) -> Reply:
    return call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=token, backup_id=backup_id),
    )


def get(token: str, backup_id: str) -> dict[str, Any]:
    reply = call(
        "list_backups", load_event("list_backups/get_backup.json", token=token, backup_id=backup_id)
    )
    assert reply.status == 200, reply.body
    return reply.body  # type: ignore[no-any-return]


def objects(s3_server: Any, bucket: str, schema: str) -> list[str]:
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def open_uploads(s3_server: Any, bucket: str, schema: str) -> dict[str, int]:
    """Unfinished multipart uploads under the clinic's prefix → parts uploaded so far."""
    s3 = s3_server.client()
    found = {}
    for upload in s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{schema}/").get("Uploads", []):
        parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        found[upload["Key"]] = len(parts.get("Parts", []))
    return found


def lock_rows(db: Any, schema: str) -> int:
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(schema, "backup_operation_lock")
            )
        )
        return int(cur.fetchone()[0])


def audit(db: Any, schema: str) -> list[tuple[str, str, str]]:
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT action, outcome, actor_id FROM {} ORDER BY at").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        return [tuple(row) for row in cur.fetchall()]


def backdate_deletion(database_url: str, schema: str, backup_id: str, days: int) -> None:
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "UPDATE {} SET deleted_at = deleted_at - %s * interval '1 day' WHERE id = %s"
            ).format(sql.Identifier(schema, "backup_records")),
            (days, backup_id),
        )
    conn.close()


def completed_backup(sqs: Any, admin: str) -> dict[str, Any]:
    reply = create(admin)
    assert reply.status == 202, reply.body
    assert sqs.drain_into_worker() == [{"batchItemFailures": []}]
    done = get(admin, reply.body["id"])
    assert done["status"] == "completed", done
    return done


@pytest.mark.usefixtures("app_env")
def test_a_deleted_backup_is_undeleted_within_its_grace_period_and_downloads_again(
    clinic_factory, sqs, s3_server, bucket, db
):
    # Given a completed backup of a clinic that registered its key, deleted by its admin
    schema = clinic_factory(patients=50)
    admin = mint(schema, "admin", sub="u-admin")
    register_clinic_key(schema)
    done = completed_backup(sqs, admin)
    backup_id = done["id"]
    assert done["purge_after"] is None and done["cancel_requested_at"] is None
    assert delete(admin, backup_id).status == 204

    # Then the list tells when it will be purged: deleted_at + DELETE_GRACE_DAYS (7)
    page = call(
        "list_backups",
        load_event("list_backups/get_backups.json", token=admin, query={"include_deleted": "true"}),
    ).body
    [deleted] = page["items"]
    assert deleted["status"] == "deleted"
    assert datetime.fromisoformat(deleted["purge_after"]) - datetime.fromisoformat(
        deleted["deleted_at"]
    ) == timedelta(days=7)

    # When staff asks to undelete it: refused (DELETE_ROLES), and another clinic's admin: 404
    staff = mint(schema, "staff", sub="u-staff")
    assert (undelete(staff, backup_id).status, undelete(staff, backup_id).error_code) == (
        403,
        "forbidden",
    )
    other = clinic_factory(patients=5)
    stranger = undelete(mint(other, "admin"), backup_id)
    assert (stranger.status, stranger.error_code) == (404, "backup_not_found")

    # When the admin undeletes it
    reply = undelete(admin, backup_id)

    # Then it is completed again, without deletion or purge time, its manifest too
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "completed"
    assert reply.body["deleted_at"] is None and reply.body["purge_after"] is None
    assert reply.body["sha256"] == done["sha256"]
    key = next(k for k in objects(s3_server, bucket, schema) if k.endswith(".dump.age"))
    manifest = json.loads(
        s3_server.client().get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read()
    )
    assert manifest["deleted_at"] is None

    # And it downloads as before
    signed = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=admin, backup_id=backup_id),
    )
    assert signed.status == 200, signed.body
    fetched = httpx.get(signed.body["url"], timeout=30)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == done["sha256"]

    # And undeleting a completed backup again changes nothing (200, idempotent)
    again = undelete(admin, backup_id)
    assert again.status == 200 and again.body == reply.body

    # And the audit says who did what
    trail = audit(db, schema)
    assert ("backup.undelete", "denied", "u-staff") in trail
    assert ("backup.undelete", "undeleted", "u-admin") in trail
    assert ("backup.undelete", "unchanged", "u-admin") in trail


@pytest.mark.usefixtures("app_env")
def test_after_the_grace_period_or_the_purge_undelete_is_409_backup_purged(
    clinic_factory, sqs, s3_server, bucket, database_url
):
    # Given a deleted backup whose grace period is over, its file not purged yet
    schema = clinic_factory(patients=50)
    admin = mint(schema, "admin", sub="u-admin")
    backup_id = completed_backup(sqs, admin)["id"]
    assert delete(admin, backup_id).status == 204
    backdate_deletion(database_url, schema, backup_id, days=8)

    # When the admin asks to undelete it: refused (the purge may be removing it right now)
    reply = undelete(admin, backup_id)
    assert (reply.status, reply.error_code) == (409, "backup_purged"), reply.body
    assert get(admin, backup_id)["status"] == "deleted"

    # And once the purge removed its file: the same answer, and it stays deleted
    svc = build_services(get_settings(DeleteBackupSettings))
    assert service.purge_deleted(svc, schema) == 1
    assert objects(s3_server, bucket, schema) == []
    reply = undelete(admin, backup_id)
    assert (reply.status, reply.error_code) == (409, "backup_purged")
    assert get(admin, backup_id)["status"] == "deleted"


@pytest.mark.usefixtures("app_env")
def test_a_pending_backup_is_cancelled_at_once_frees_the_clinic_and_counts_toward_the_quota(
    clinic_factory, sqs, s3_server, bucket, db, monkeypatch
):
    # Given a clinic allowed two manual backups a day, and a pending backup a staff member made
    monkeypatch.setenv("MANUAL_BACKUPS_PER_DAY", "2")
    reset_caches()
    schema = clinic_factory(patients=20)
    author = mint(schema, "staff", sub="u-author")
    colleague = mint(schema, "staff", sub="u-colleague")
    admin = mint(schema, "admin", sub="u-admin")
    first = create(author)
    assert first.status == 202
    backup_id = first.body["id"]

    # When another staff member asks to cancel it: 403; another clinic's admin: 404
    refused = cancel(colleague, backup_id)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    other = clinic_factory(patients=5)
    stranger = cancel(mint(other, "admin"), backup_id)
    assert (stranger.status, stranger.error_code) == (404, "backup_not_found")

    # When its author cancels it
    reply = cancel(author, backup_id)

    # Then it is cancelled at once (200), and the clinic's lock is free
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "cancelled"
    assert reply.body["cancel_requested_at"] and reply.body["finished_at"]
    assert lock_rows(db, schema) == 0

    # And cancelling it again is 409 backup_not_cancellable
    again = cancel(admin, backup_id)
    assert (again.status, again.error_code) == (409, "backup_not_cancellable")

    # And the next backup is accepted; an admin may cancel anyone's
    second = create(author)
    assert second.status == 202, second.body
    assert cancel(admin, second.body["id"]).status == 200

    # And the cancelled ones count toward the quota: no third today
    third = create(author)
    assert (third.status, third.error_code) == (429, "quota_exceeded")

    # And their queued jobs, when delivered, find nothing to run: nothing was stored
    assert sqs.drain_into_worker() == [{"batchItemFailures": []}]
    assert get(admin, backup_id)["status"] == "cancelled"
    assert get(admin, second.body["id"])["status"] == "cancelled"
    assert objects(s3_server, bucket, schema) == []

    # And a cancelled backup that is then deleted cannot be undeleted into a completed one
    assert delete(admin, backup_id).status == 204
    back = undelete(admin, backup_id)
    assert (back.status, back.error_code) == (409, "backup_not_completed")

    # And the list filters on the new status
    page = call(
        "list_backups",
        load_event("list_backups/get_backups.json", token=admin, query={"status": "cancelled"}),
    ).body
    assert [i["id"] for i in page["items"]] == [second.body["id"]]

    trail = audit(db, schema)
    assert ("backup.cancel", "denied", "u-colleague") in trail
    assert ("backup.cancel", "cancelled", "u-author") in trail
    assert ("backup.cancel", "cancelled", "u-admin") in trail


def test_a_running_backup_cancelled_mid_upload_stops_and_leaves_nothing_behind(
    app_env, clinic_factory, sqs, s3_server, bucket, db, pg_bin_dir, tmp_path: Path, monkeypatch
):
    # Given short leases (a beat every 0.75 s), 5 MB parts, and a pg_dump that writes the
    # archive and 6 MB more, then stalls (a slow dump) after the first part was uploaded
    monkeypatch.setenv("LOCK_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("RESTORE_LOCK_TIMEOUT", "2s")
    monkeypatch.setenv("S3_MULTIPART_CHUNK_MB", "5")
    install_tool(
        tmp_path / "bin", tmp_path / "flags", pg_bin_dir, "pg_dump", DUMP_THEN_STALL, JUNK_MB=6
    )
    monkeypatch.setenv("PG_BIN_DIR", str(tmp_path / "bin"))
    reset_caches()
    schema = clinic_factory(patients=50)
    admin = mint(schema, "admin", sub="u-admin")
    started = create(admin)
    assert started.status == 202
    backup_id = started.body["id"]
    worker = threading.Thread(target=sqs.drain_into_worker)
    worker.start()
    try:
        wait_until(lambda: any(open_uploads(s3_server, bucket, schema).values()), what="a part")

        # When the admin cancels it
        reply = cancel(admin, backup_id)

        # Then the answer is 202: still running, the cancel requested
        assert reply.status == 202, reply.body
        assert reply.body["status"] == "running"
        assert reply.body["cancel_requested_at"] is not None
    finally:
        # (the worker ends by itself: its heartbeat hears the cancel and kills pg_dump)
        worker.join(timeout=60)
    assert not worker.is_alive()

    # And the worker ended it cancelled: no object, no unfinished upload, the lock free
    done = get(admin, backup_id)
    assert done["status"] == "cancelled", done
    assert done["error_code"] is None and done["size_bytes"] is None
    assert objects(s3_server, bucket, schema) == []
    assert open_uploads(s3_server, bucket, schema) == {}
    assert lock_rows(db, schema) == 0
    assert not (tmp_path / "flags" / "go").exists()  # nothing but the cancel let it end

    # And the next backup is accepted (cancelled at once: the test needs no second dump)
    following = create(admin)
    assert following.status == 202, following.body
    assert cancel(admin, following.body["id"]).status == 200

    trail = audit(db, schema)
    assert ("backup.cancel", "requested", "u-admin") in trail
    assert ("backup.run", "cancelled", "system") in trail


def test_a_cancel_that_comes_after_the_last_beat_still_wins_over_completion(
    app_env, clinic_factory, sqs, db
):
    # Given a running backup (claimed by hand) whose cancel was requested
    schema = clinic_factory(patients=20)
    admin = mint(schema, "admin", sub="u-admin")
    started = create(admin)
    assert started.status == 202
    backup_id = started.body["id"]
    svc = build_services(get_settings(DeleteBackupSettings))
    svc.clock = FixedClock(datetime.fromisoformat(started.body["created_at"]))
    assert svc.records.claim(schema, uuid.UUID(backup_id), svc.clock.now(), Lease.new(60))
    assert cancel(admin, backup_id).status == 202

    # When its worker tries to complete it: refused as cancelled (never completed)
    with pytest.raises(BackupCancelled):
        svc.records.complete(
            schema,
            uuid.UUID(backup_id),
            DumpResult(
                size_bytes=1, sha256="0" * 64, pg_dump_version="18", server_version="15", seconds=0
            ),
            svc.clock.now(),
        )
    assert get(admin, backup_id)["status"] == "running"
    # (the worker then ends it cancelled: finish_cancelled frees the lock)
    assert svc.records.finish_cancelled(schema, uuid.UUID(backup_id), svc.clock.now())
    assert get(admin, backup_id)["status"] == "cancelled"
    assert lock_rows(db, schema) == 0
    sqs.receive()  # (its queued job is left on this test's own queue)

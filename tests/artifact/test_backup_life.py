"""The whole life of a clinic's backups, through the built functions only (the artifact
harness), against the real services: POST /backups → the queue message → the worker (an
age-encrypted multipart upload) → list → download (the signed URL's bytes hash to the record's
sha256) → delete → restore (pre-restore backup, swap, undo) → verification drill →
re-encryption → the scheduler's hourly event → the sweeper.

Every job travels as it does in AWS: the functions send it to the (moto) SQS queue the template
names; the test reads it from there and the harness delivers it to the built worker as an SQS
event (`SqsEventSource`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg2
import pyrage
import pytest
from psycopg2 import sql
from pyrage import x25519

from tests import helpers
from tests.artifact.conftest import Harness, sample_event
from tests.integration.restore_support import checksums

pytestmark = pytest.mark.artifact

CLINIC = "clinica_norte"
# Above the 8 MiB part size (S3_MULTIPART_CHUNK_MB's default): the upload takes two parts.
PART_BYTES = 8 * 1024 * 1024
DOCUMENT_ROWS, DOCUMENT_BYTES = 140, 64 * 1024


class Clinic:
    """The clinic's admin, calling the built functions with API Gateway's events."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.token = harness.local.token(CLINIC, "admin")

    def call(
        self,
        function: str,
        event: str,
        *,
        id: str | None = None,
        body: Any = ...,
        query: dict[str, str] | None = None,
    ) -> helpers.Reply:
        return self.harness.call(
            function,
            helpers.load_event(event, token=self.token, backup_id=id, body=body, query=query),
        )

    def backup(self, id: str) -> dict[str, Any]:
        reply = self.call("list_backups", "list_backups/get_backup.json", id=id)
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def restore_job(self, id: str) -> dict[str, Any]:
        reply = self.call("restore_backup", "restore_backup/get_restore.json", id=id)
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def register_key(self, label: str) -> x25519.Identity:
        identity = x25519.Identity.generate()
        reply = self.call(
            "encryption_keys",
            "encryption_keys/post_key.json",
            body={"label": label, "public_key": str(identity.to_public())},
        )
        assert reply.status == 201, reply.body
        return identity

    def download(self, id: str) -> tuple[dict[str, Any], bytes]:
        reply = self.call("download_backup", "download_backup/get_download.json", id=id)
        assert reply.status == 200, reply.body
        with httpx.Client(trust_env=False, timeout=30) as plain:
            fetched = plain.get(reply.body["url"])
        assert fetched.status_code == 200
        return dict(reply.body), fetched.content

    def create_backup(self, note: str) -> dict[str, Any]:
        """POST /backups, then the queued job through the built worker."""
        accepted = self.call(
            "create_backup", "create_backup/post_backups.json", body={"note": note}
        )
        assert accepted.status == 202, accepted.body
        assert accepted.body["status"] == "pending"
        queued = self.harness.queued("JobQueue")
        assert {"kind": "backup", "schema": CLINIC, "backup_id": accepted.body["id"]}.items() <= (
            queued[0].items()
        ), queued
        deliveries = self.harness.drain()
        worker = [d for d in deliveries if d.function == "create_backup"]
        assert [d.bodies[0]["backup_id"] for d in worker] == [accepted.body["id"]]
        assert worker[0].invocation.payload == {"batchItemFailures": []}
        # … and the light check the worker queued after it, on the restore queue
        assert any(
            d.function == "restore_backup" and d.bodies[0]["kind"] == "verify_light"
            for d in deliveries
        )
        record = self.backup(accepted.body["id"])
        assert record["status"] == "completed", record
        return record


def stored(harness: Harness, s3_server: Any, bucket: str) -> dict[str, dict[str, Any]]:
    """The clinic's objects in the bucket, by key."""
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{CLINIC}/")
    return {o["Key"]: o for o in listed.get("Contents", [])}


def add_documents(app_url: str) -> None:
    """Scanned documents (incompressible bytes), as the clinic software would store them."""
    with psycopg2.connect(app_url) as conn, conn.cursor() as cur:
        table = sql.Identifier(CLINIC, "documents")
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id serial PRIMARY KEY, scan bytea)").format(
                table
            )
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (scan) SELECT (SELECT decode(string_agg(md5(random()::text "
                "|| i || j), ''), 'hex') FROM generate_series(1, %s) j) "
                "FROM generate_series(1, %s) i"
            ).format(table),
            (DOCUMENT_BYTES // 16, DOCUMENT_ROWS),
        )
    conn.close()


def change_data(app_url: str) -> None:
    with psycopg2.connect(app_url) as conn, conn.cursor() as cur:
        patients = sql.Identifier(CLINIC, "patients")
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (first_name, last_name, dni, birth_date) "
                "SELECT 'Nuevo', 'Paciente ' || i, lpad((800000 + i)::text, 8, '0') || 'Z', "
                "date '1991-02-03' FROM generate_series(1, 30) i"
            ).format(patients)
        )
        cur.execute(sql.SQL("UPDATE {} SET phone = '611111111' WHERE id <= 25").format(patients))
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE id IN (SELECT id FROM {} LIMIT 3)").format(
                sql.Identifier(CLINIC, "documents"), sql.Identifier(CLINIC, "documents")
            )
        )
    conn.close()


def test_the_life_of_a_clinics_backups_through_the_built_functions(
    harness: Harness, s3_server: Any, bucket: str, pg18_server: str
) -> None:
    db = harness.local.database
    clinic = Clinic(harness)
    add_documents(db.app_url)
    identity = clinic.register_key("Dirección")
    urls: list[str] = []

    # --- POST /backups → queue → worker: an age-encrypted multipart upload -------------------
    first = clinic.create_backup("antes de la auditoría")
    assert first["encryption"] == "age" and first["trigger"] == "manual"
    assert [r["label"] for r in first["recipients"]] == ["platform", "Dirección"]
    objects = stored(harness, s3_server, bucket)
    key = next(k for k in objects if k.endswith(first["file_name"]))
    head = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == first["size_bytes"]
    parts = -(-first["size_bytes"] // PART_BYTES)
    assert parts >= 2 and head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart upload
    stored_bytes = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored_bytes.startswith(b"age-encryption.org/v1")

    # --- list ------------------------------------------------------------------------------
    listed = clinic.call("list_backups", "list_backups/get_backups.json")
    assert listed.status == 200
    assert first["id"] in [item["id"] for item in listed.body["items"]]

    # --- download: the signed URL's bytes are the record's --------------------------------
    signed, data = clinic.download(first["id"])
    urls.append(signed["url"])
    assert hashlib.sha256(data).hexdigest() == first["sha256"] == signed["sha256"]
    plain = pyrage.decrypt(data, [identity])
    assert plain.startswith(b"PGDMP")
    assert hashlib.sha256(plain).hexdigest() == first["plaintext_sha256"]

    # --- delete ------------------------------------------------------------------------------
    deleted = clinic.call("delete_backup", "delete_backup/delete_backup.json", id=first["id"])
    assert deleted.status == 204, deleted.body
    gone = clinic.call("download_backup", "download_backup/get_download.json", id=first["id"])
    assert (gone.status, gone.error_code) == (409, "backup_not_completed")
    assert key in stored(harness, s3_server, bucket)  # kept for the grace period

    # --- restore: pre-restore backup, the swap, then the undo --------------------------------
    source = clinic.create_backup("antes de los cambios")
    at_backup = checksums(db.admin_url, CLINIC)
    change_data(db.app_url)
    changed = checksums(db.admin_url, CLINIC)
    assert changed != at_backup
    requested = clinic.call(
        "restore_backup",
        "restore_backup/post_restore.json",
        id=source["id"],
        body={"confirm": CLINIC},
    )
    assert requested.status == 202, requested.body
    assert harness.queued("RestoreJobQueue")[0]["kind"] == "restore"
    harness.drain()
    job = clinic.restore_job(requested.body["id"])
    assert job["status"] == "completed", job
    assert checksums(db.admin_url, CLINIC) == at_backup
    pre = clinic.backup(job["pre_restore_backup_id"])
    assert pre["status"] == "completed" and pre["trigger"] == "pre_restore"
    assert pre["encryption"] == "age"
    assert job["undo_available"] is True
    undo = clinic.call("restore_backup", "restore_backup/post_undo.json", id=requested.body["id"])
    assert undo.status == 202, undo.body
    harness.drain()
    assert checksums(db.admin_url, CLINIC) == changed

    # --- verification drill on the separate server --------------------------------------------
    asked = clinic.call("restore_backup", "restore_backup/post_verify.json", id=source["id"])
    assert asked.status == 202, asked.body
    harness.drain()
    drill = clinic.restore_job(asked.body["id"])
    assert drill["status"] == "completed" and drill["outcome"] == "passed", drill
    verified = clinic.backup(source["id"])
    assert verified["verify_outcome"] == "passed"
    assert verified["verify_details"]["table_counts"]["documents"] == DOCUMENT_ROWS
    assert verified["verify_details"]["server_version_num"] >= 180000  # pg18, not the clinic's
    with psycopg2.connect(pg18_server) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'verify\\_%'")
        assert cur.fetchone()[0] == 0  # the scratch database is gone
    conn.close()

    # --- re-encryption for a key registered later ---------------------------------------------
    later = clinic.register_key("Gerencia")
    again = clinic.call("encryption_keys", "encryption_keys/post_reencrypt.json", id=source["id"])
    assert again.status == 202, again.body
    harness.drain()
    rewrapped = clinic.backup(source["id"])
    assert rewrapped["reencrypting"] is False
    assert "Gerencia" in [r["label"] for r in rewrapped["recipients"]]
    assert rewrapped["sha256"] != source["sha256"]
    assert rewrapped["plaintext_sha256"] == source["plaintext_sha256"]
    signed, data = clinic.download(source["id"])
    urls.append(signed["url"])
    assert hashlib.sha256(data).hexdigest() == rewrapped["sha256"]
    assert hashlib.sha256(pyrage.decrypt(data, [later])).hexdigest() == source["plaintext_sha256"]

    # --- the scheduler's hourly event, then the sweeper ---------------------------------------
    # Given the clinic scheduled for this hour, and the deleted backup past its grace period
    hour = dt.datetime.now(ZoneInfo("Europe/Madrid")).hour
    settings = clinic.call(
        "backup_settings",
        "backup_settings/put_backup_settings.json",
        body={
            "enabled": True,
            "hour": hour,
            "weekdays": [1, 2, 3, 4, 5, 6, 7],
            "time_zone": "Europe/Madrid",
            "locale": "es-ES",
            "keep_daily": 7,
            "keep_weekly": 4,
            "keep_monthly": 6,
        },
    )
    assert settings.status == 200, settings.body
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "UPDATE {} SET deleted_at = deleted_at - interval '8 days' WHERE id = %s"
            ).format(sql.Identifier(CLINIC, "backup_records")),
            (first["id"],),
        )
    conn.close()

    # When EventBridge's hourly event reaches the built scheduler
    run = harness.payload(
        "scheduler", sample_event("scheduler/scheduled_event.json", harness.local)
    )

    # Then it queued the clinic's slot and the sweeper purged the deleted backup's files
    assert run["errors"] == 0 and run["sweep"]["errors"] == 0, run
    assert run["enqueued"] >= 1 and run["sweep"]["purged"] >= 1, run
    queued = [b for b in harness.queued("JobQueue") if b["schema"] == CLINIC]
    assert [b["trigger"] for b in queued] == ["scheduled"], queued
    harness.drain()
    scheduled = clinic.backup(queued[0]["backup_id"])
    assert scheduled["status"] == "completed" and scheduled["trigger"] == "scheduled"
    remaining = stored(harness, s3_server, bucket)
    assert not [k for k in remaining if first["file_name"] in k]  # the archive and its manifest
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT purged_at IS NOT NULL FROM {} WHERE id = %s").format(
                sql.Identifier(CLINIC, "backup_records")
            ),
            (first["id"],),
        )
        assert cur.fetchone() == (True,)
    conn.close()

    # And through it all, no log line of a built function held a token, a secret or a URL
    logs = harness.logs()
    leaks = [s for s in [clinic.token, *harness.local.secrets, *urls] if s in logs]
    assert leaks == []
    assert CLINIC in logs  # (the functions did log, with the clinic's key)

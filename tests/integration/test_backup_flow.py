"""The whole path a clinic takes: create → worker → list → download → soft delete → purge."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from clinic_backups.domain.names import manifest_key

from tests.helpers import call, load_event, mint, register_clinic_key

pytestmark = pytest.mark.usefixtures("app_env")


def create(token: str, note: str | None = None):
    body = {"note": note} if note is not None else None
    return call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=body)
    )


def get(token: str, backup_id: str):
    return call(
        "list_backups", load_event("list_backups/get_backup.json", token=token, backup_id=backup_id)
    )


def test_backup_is_created_run_listed_downloaded_deleted_and_purged(
    clinic_factory, sqs, s3_server, bucket, pg_bin_dir, db, tmp_path: Path, monkeypatch
):
    # Given a clinic, its admin, and the key the clinic registered for its backups
    schema = clinic_factory(patients=300)
    admin = mint(schema, "admin", sub="u-admin", name="Dra. Ana Pérez")
    identity = register_clinic_key(schema, "Llave de dirección")

    # When the admin asks for a backup
    reply = create(admin, note="Antes de la migración")
    assert reply.status == 202, reply.body
    record = reply.body
    assert record["status"] == "pending"
    assert record["note"] == "Antes de la migración"
    assert record["created_by"] == "u-admin"
    assert record["created_by_name"] == "Dra. Ana Pérez"
    assert record["file_name"].startswith(f"{schema}-") and record["file_name"].endswith(
        ".dump.age"
    )
    assert record["encryption"] == "age"
    assert "storage_key" not in record

    # Then exactly one job is queued, carrying no token
    messages = sqs.receive()
    assert len(messages) == 1
    assert admin not in messages[0]["Body"]
    sqs.client.change_message_visibility(
        QueueUrl=sqs.url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )

    # When the worker consumes the queue
    responses = sqs.drain_into_worker()
    assert responses == [{"batchItemFailures": []}]

    # Then the backup is completed with its size and checksum
    done = get(admin, record["id"]).body
    assert done["status"] == "completed", done
    assert done["size_bytes"] > 1000
    assert len(done["sha256"]) == 64
    assert len(done["plaintext_sha256"]) == 64 and done["plaintext_sha256"] != done["sha256"]
    assert [(r["kind"], r["label"]) for r in done["recipients"]] == [
        ("platform", "platform"),
        ("clinic", "Llave de dirección"),
    ]
    assert done["pg_dump_version"].startswith("18")
    assert done["started_at"] and done["finished_at"]

    # And the list shows it first
    page = call("list_backups", load_event("list_backups/get_backups.json", token=admin)).body
    assert [item["id"] for item in page["items"]] == [record["id"]]
    assert page["next_cursor"] is None

    # When the admin asks for the download
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=admin, backup_id=record["id"]),
    )
    assert reply.status == 200, reply.body
    download = reply.body
    assert download["file_name"] == done["file_name"]
    assert download["size_bytes"] == done["size_bytes"]
    assert download["sha256"] == done["sha256"]
    assert download["encryption"] == "age"
    assert [r["label"] for r in download["recipients"]] == ["Llave de dirección"]

    # Then the signed URL serves the archive under its file name
    fetched = httpx.get(download["url"], timeout=30)
    assert fetched.status_code == 200
    assert done["file_name"] in fetched.headers.get("content-disposition", "")
    assert hashlib.sha256(fetched.content).hexdigest() == done["sha256"]
    assert fetched.content.startswith(b"age-encryption.org/v1")
    encrypted = tmp_path / download["file_name"]
    encrypted.write_bytes(fetched.content)

    # And the clinic opens it offline with Debian's age CLI and its own key file
    key_file = tmp_path / f"clave-backups-{schema}.txt"
    key_file.write_text(identity + "\n")
    archive = tmp_path / "backup.dump"
    subprocess.run(
        ["age", "-d", "-i", str(key_file), "-o", str(archive), str(encrypted)], check=True
    )
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == done["plaintext_sha256"]
    listing = subprocess.run(
        [f"{pg_bin_dir}/pg_restore", "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"TABLE DATA {schema} patients" in listing
    assert "backup_records" not in listing and "backup_audit" not in listing

    # And a manifest sits beside the archive
    s3 = s3_server.client()
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")["Contents"]
        if o["Key"].endswith(".dump.age")
    )
    assert key.startswith(f"{schema}/")
    s3.head_object(Bucket=bucket, Key=manifest_key(key))

    # When the admin deletes it
    reply = call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=admin, backup_id=record["id"]),
    )
    assert reply.status == 204

    # Then it leaves the list but the object is kept for the grace period
    page = call("list_backups", load_event("list_backups/get_backups.json", token=admin)).body
    assert page["items"] == []
    page = call(
        "list_backups",
        load_event("list_backups/get_backups.json", token=admin, query={"include_deleted": "true"}),
    ).body
    assert [(i["id"], i["status"]) for i in page["items"]] == [(record["id"], "deleted")]
    s3.head_object(Bucket=bucket, Key=key)

    # And a purge within the grace period keeps it; after the grace period removes it
    from clinic_backups.usecases import backups as service
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import DeleteBackupSettings, get_settings

    svc = build_services(get_settings(DeleteBackupSettings))
    assert service.purge_deleted(svc, schema) == 0
    later = svc.clock.now() + timedelta(days=8)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert service.purge_deleted(svc, schema) == 1
    remaining = s3.list_objects_v2(Bucket=bucket, Prefix=f"{schema}/").get("Contents", [])
    assert remaining == []

    # And the audit has the create, download and delete with who and the request id
    with db.cursor() as cur:
        cur.execute(
            f'SELECT action, outcome, actor_id, request_id FROM "{schema}".backup_audit ORDER BY at'
        )
        audit = cur.fetchall()
    actions = [(a, o, who) for a, o, who, _ in audit]
    assert ("backup.create", "accepted", "u-admin") in actions
    assert ("backup.download", "signed", "u-admin") in actions
    assert ("backup.delete", "deleted", "u-admin") in actions
    assert all(req for a, _, who, req in audit if who == "u-admin")
    uuid.UUID(record["id"])

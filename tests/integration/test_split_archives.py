"""Issue 19: a clinic whose encrypted archive is larger than the store accepts in one object
(the Supabase stand-in's bucket limit, 5 MB here) is backed up as numbered parts, downloaded
part by part through their signed URLs, joined with `cat` and opened with the real `age` CLI,
verified and restored; with splitting off the same backup fails `storage_object_too_large`.

Real PostgreSQL 15 (clinics) and 18 (the drill), the stand-in's REST API and its S3 proxy
(which refuses anything over the limit with EntityTooLarge, as Supabase does) over SeaweedFS.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from clinic_backups.domain.names import OWNED_TABLES
from clinic_backups.usecases import backups as service
from clinic_backups.usecases import sweeper
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings
from psycopg2 import sql

from devstack import demo
from tests.helpers import call, load_event, mint, register_clinic_key, reset_caches
from tests.integration.conftest import RestoreDatabase
from tests.integration.restore_support import backup, checksums, get_backup, restore
from tests.integration.test_verify import verify

LIMIT = 5_000_000
AGE_HEADER = b"age-encryption.org/v1"
# Incompressible: pg_dump's zstd cannot shrink random bytes, so the archive is ~13 MB.
SCAN_ROWS, SCAN_BYTES = 13, 1_000_000


@pytest.fixture
def limited(supabase_env: Any, bucket: str) -> Any:
    """The stand-in with the bucket's file_size_limit at 5 MB (put back afterwards)."""
    supabase_env.buckets.update(bucket, file_size_limit=LIMIT)
    return supabase_env


@pytest.fixture
def verify_server(pg18_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VERIFY_DATABASE_URL", pg18_server)
    reset_caches()
    return pg18_server


def add_scans(db: RestoreDatabase, schema: str) -> None:
    """A table of random bytes the clinic's app owns (so the backup role may dump it)."""
    with psycopg2.connect(db.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(demo.APP_ROLE)))
        table = sql.Identifier(schema, "scans")
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, data bytea)").format(table))
        for row in range(SCAN_ROWS):
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table),
                (row, psycopg2.Binary(os.urandom(SCAN_BYTES))),
            )
    conn.close()


def stored(s3_server: Any, bucket: str, schema: str) -> dict[str, int]:
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def test_an_archive_three_times_the_limit_is_stored_downloaded_verified_and_restored_in_parts(
    limited,
    restore_env_pg15: RestoreDatabase,
    owned_clinic_pg15,
    sqs,
    restore_sqs,
    verify_server,
    s3_server,
    bucket,
    pg_bin_dir,
    tmp_path: Path,
):
    # Given a clinic whose encrypted archive is about three times the bucket's limit
    schema = owned_clinic_pg15(patients=200)
    add_scans(restore_env_pg15, schema)
    identity = register_clinic_key(schema, "Llave de dirección")
    before = checksums(restore_env_pg15.admin_url, schema)

    # When it is backed up
    record = backup(schema, sqs)

    # Then the archive is stored as numbered parts under the limit, and no single object
    assert record["size_bytes"] > 2 * LIMIT
    objects = stored(s3_server, bucket, schema)
    key = next(k for k in objects if k.endswith(".manifest.json"))[: -len(".manifest.json")]
    part_keys = sorted(k for k in objects if k.startswith(key + ".part"))
    count = -(-record["size_bytes"] // LIMIT)
    assert count >= 3
    assert part_keys == [f"{key}.part{n:03d}" for n in range(1, count + 1)]
    assert key not in objects
    assert all(objects[k] == LIMIT for k in part_keys[:-1]) and objects[part_keys[-1]] <= LIMIT
    assert sum(objects[k] for k in part_keys) == record["size_bytes"]
    # every part went through the stand-in's S3 endpoint, which refused none of them
    proxy = [r for r in limited.s3.seen if f"/{schema}/" in r.path]
    assert proxy and not [r for r in proxy if r.status == 413]
    # only the first part begins with age's header; the manifest lists each part's checksum
    s3 = s3_server.client()
    heads = [
        s3.get_object(Bucket=bucket, Key=k, Range="bytes=0-20")["Body"].read() for k in part_keys
    ]
    assert heads[0].startswith(AGE_HEADER) and not any(h.startswith(AGE_HEADER) for h in heads[1:])
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key + ".manifest.json")["Body"].read())
    assert manifest["sha256"] == record["sha256"]
    assert manifest["size_bytes"] == record["size_bytes"]
    assert [p["key"] for p in manifest["parts"]] == part_keys
    for part in manifest["parts"]:
        body = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (part["size_bytes"], part["sha256"])
    assert "parts" not in record and "storage_key" not in record

    # When the clinic downloads it
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=mint(schema), backup_id=record["id"]),
    )
    assert reply.status == 200, reply.body
    download = reply.body
    assert download["file_name"] == record["file_name"]
    assert (download["size_bytes"], download["sha256"]) == (record["size_bytes"], record["sha256"])
    names = [p["name"] for p in download["parts"]]
    assert names == [f"{record['file_name']}.part{n:03d}" for n in range(1, count + 1)]

    # Then each part comes through its own signed URL over HTTP, under its own name
    files = []
    for part in download["parts"]:
        fetched = httpx.get(part["url"], timeout=60)
        assert fetched.status_code == 200
        assert part["name"] in fetched.headers["content-disposition"]
        assert len(fetched.content) == part["size_bytes"]
        assert hashlib.sha256(fetched.content).hexdigest() == part["sha256"]
        path = tmp_path / part["name"]
        path.write_bytes(fetched.content)
        files.append(path)
    # And `cat` joins them into the file, which the clinic opens with age and its key
    joined = tmp_path / download["file_name"]
    with joined.open("wb") as out:
        subprocess.run(["cat", *map(str, files)], stdout=out, check=True)
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == record["sha256"]
    key_file = tmp_path / "clave.txt"
    key_file.write_text(identity + "\n")
    archive = tmp_path / "backup.dump"
    subprocess.run(["age", "-d", "-i", str(key_file), "-o", str(archive), str(joined)], check=True)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == record["plaintext_sha256"]
    listing = subprocess.run(
        [f"{pg_bin_dir}/pg_restore", "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"TABLE DATA {schema} scans" in listing

    # And the light check and the full drill read the parts as one archive
    restore_sqs.drain_into_worker()
    checked = get_backup(schema, record["id"])
    assert checked["check_outcome"] == "passed", checked
    assert checked["table_counts"]["scans"] == SCAN_ROWS
    job = verify(schema, record["id"], restore_sqs)
    assert (job["status"], job["outcome"]) == ("completed", "passed"), job

    # When the clinic's data changes and the split backup is restored
    with psycopg2.connect(restore_env_pg15.admin_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "scans")))
    conn.close()
    job = restore(schema, record["id"], restore_sqs)

    # Then the clinic is exactly as it was backed up
    assert job["status"] == "completed", job
    assert checksums(restore_env_pg15.admin_url, schema) == before


def test_with_splitting_off_an_archive_over_the_limit_fails_naming_the_limit_and_the_fix(
    limited, clinic_factory, sqs, s3_server, bucket, database_url, monkeypatch, capsys
):
    # Given splitting turned off and a clinic whose archive is over the bucket's limit
    monkeypatch.setenv("STORAGE_SPLIT_ARCHIVES", "false")
    reset_caches()
    schema = clinic_factory(patients=50)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        table = sql.Identifier(schema, "scans")
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, data bytea)").format(table))
        for row in range(6):
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table),
                (row, psycopg2.Binary(os.urandom(SCAN_BYTES))),
            )
    conn.close()
    register_clinic_key(schema)

    # When it is backed up
    token = mint(schema)
    created = call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=None)
    )
    capsys.readouterr()
    sqs.drain_into_worker()

    # Then the backup fails with storage_object_too_large, naming the limit and the fix
    done = get_backup(schema, created.body["id"])
    assert done["status"] == "failed"
    assert done["error_code"] == "storage_object_too_large"
    assert "5.0 MB" in done["error"] and "STORAGE_SPLIT_ARCHIVES" in done["error"]
    assert "file_size_limit" in done["error"]
    # And the failed-backup metric (the alarm's) is emitted, and nothing is kept
    assert '"BackupFailed"' in capsys.readouterr().out
    assert stored(s3_server, bucket, schema) == {}


def add_scans_here(database_url: str, schema: str, rows: int) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        table = sql.Identifier(schema, "scans")
        cur.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, data bytea)").format(table))
        for row in range(rows):
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table),
                (row, psycopg2.Binary(os.urandom(SCAN_BYTES))),
            )
    conn.close()


def test_a_split_backup_is_reencrypted_rebuilt_deleted_and_purged_as_one(
    limited, clinic_factory, sqs, restore_sqs, s3_server, bucket, database_url, db, tmp_path
):
    # Given a split backup only the platform can open (made before the clinic had a key)
    schema = clinic_factory(patients=50)
    add_scans_here(database_url, schema, 11)
    old = backup(schema, sqs)
    restore_sqs.drain_into_worker()  # the light check
    old_objects = stored(s3_server, bucket, schema)
    assert len([k for k in old_objects if ".part" in k]) == 3

    # When the clinic registers a key and the backup is re-encrypted for it
    identity = register_clinic_key(schema, "Dirección")
    reply = call(
        "encryption_keys",
        load_event("encryption_keys/post_reencrypt.json", token=mint(schema), backup_id=old["id"]),
    )
    assert reply.status == 202, reply.body
    restore_sqs.drain_into_worker()

    # Then the new generation is split the same way and the old parts are gone
    done = get_backup(schema, old["id"])
    assert done["reencrypting"] is False and done["file_name"].endswith("-g1.dump.age")
    assert done["plaintext_sha256"] == old["plaintext_sha256"]
    objects = stored(s3_server, bucket, schema)
    assert not set(objects) & set(old_objects)
    parts = sorted(k for k in objects if ".part" in k)
    assert [k.rsplit(".", 1)[1] for k in parts] == ["part001", "part002", "part003"]
    assert all(k.split("/")[-1].startswith(done["file_name"]) for k in parts)
    assert sum(objects[k] for k in parts) == done["size_bytes"]
    # and the clinic's key opens the parts joined
    signed = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=mint(schema), backup_id=old["id"]),
    ).body
    joined = b"".join(httpx.get(p["url"], timeout=60).content for p in signed["parts"])
    assert hashlib.sha256(joined).hexdigest() == done["sha256"]
    (tmp_path / "f.age").write_bytes(joined)
    (tmp_path / "k.txt").write_text(identity + "\n")
    plain = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "k.txt"), str(tmp_path / "f.age")],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(plain).hexdigest() == done["plaintext_sha256"]

    # And the sweeper sees no orphan among the parts, even once they are old
    svc = build_services(get_settings(OperatorSettings))
    later = datetime.now(UTC) + timedelta(hours=2)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert sweeper.sweep(svc, [schema], orphans=True).orphans == {}

    # When the clinic's backup tables are lost, the record comes back from the manifest
    with db.cursor() as cur:
        for table in OWNED_TABLES:
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
    svc = build_services(get_settings(OperatorSettings))
    report = service.rebuild_records(svc, schema)
    assert (report.inserted, report.missing_objects) == (1, [])
    assert get_backup(schema, old["id"])["sha256"] == done["sha256"]

    # When it is deleted and the grace period passes, every part goes
    deleted = call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=mint(schema), backup_id=old["id"]),
    )
    assert deleted.status == 204
    later = datetime.now(UTC) + timedelta(days=8)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert service.purge_deleted(svc, schema) == 1
    assert stored(s3_server, bucket, schema) == {}


def test_the_projects_limit_comes_from_storage_max_object_mb_and_a_refusal_says_so(
    limited, clinic_factory, sqs, s3_server, bucket, database_url, monkeypatch
):
    # Given a project limit (3 MB) below the bucket's, which the Storage API does not tell
    limited.buckets.global_file_size_limit = 3_000_000
    schema = clinic_factory(patients=50)
    add_scans_here(database_url, schema, 4)
    register_clinic_key(schema)

    # When a backup splits for the bucket's limit only, Supabase refuses its first part
    # (EntityTooLarge in namespaced XML: botocore sees no code, only the 413)
    token = mint(schema)
    first = call("create_backup", load_event("create_backup/post_backups.json", token=token))
    sqs.drain_into_worker()
    failed = get_backup(schema, first.body["id"])
    assert failed["status"] == "failed"
    assert failed["error_code"] == "storage_object_too_large"
    assert "STORAGE_MAX_OBJECT_MB" in failed["error"]
    assert [r for r in limited.s3.seen if f"/{schema}/" in r.path and r.status == 413]
    assert stored(s3_server, bucket, schema) == {}

    # When the platform sets STORAGE_MAX_OBJECT_MB to the project's limit
    monkeypatch.setenv("STORAGE_MAX_OBJECT_MB", "3")
    reset_caches()
    record = backup(schema, sqs)

    # Then the backup is stored in parts of at most 3 MB
    objects = stored(s3_server, bucket, schema)
    part_sizes = [size for key, size in sorted(objects.items()) if ".part" in key]
    assert len(part_sizes) >= 2 and max(part_sizes) == 3_000_000
    assert sum(part_sizes) == record["size_bytes"]

"""The worker: failures leave a clear `failed` record and no object; jobs run once."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from tests.helpers import call, function_module, invoke, load_event, mint, reset_caches

pytestmark = pytest.mark.usefixtures("app_env")


def start(schema: str) -> dict:
    reply = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert reply.status == 202, reply.body
    return reply.body


def record(schema: str, backup_id: str) -> dict:
    return call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=mint(schema), backup_id=backup_id),
    ).body


def objects(s3_server, bucket: str, schema: str) -> list[str]:
    return [
        o["Key"]
        for o in s3_server.client()
        .list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
        .get("Contents", [])
    ]


def pending_uploads(s3_server, bucket: str, schema: str) -> list:
    return (
        s3_server.client()
        .list_multipart_uploads(Bucket=bucket, Prefix=f"{schema}/")
        .get("Uploads", [])
    )


@pytest.fixture
def fake_pg_dump(tmp_path: Path, pg_bin_dir: str, monkeypatch):
    """Swap in a pg_dump wrapper script (the real pg_restore stays) for one test."""

    def install(body: str, version_passthrough: bool = True) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "pg_restore").unlink(missing_ok=True)
        os.symlink(f"{pg_bin_dir}/pg_restore", bin_dir / "pg_restore")
        script = bin_dir / "pg_dump"
        prelude = 'if [ "$1" = --version ]; then exec "$REAL" --version; fi\n'
        script.write_text(
            "#!/bin/bash\nREAL="
            + f"{pg_bin_dir}/pg_dump\n"
            + (prelude if version_passthrough else "")
            + body
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
        reset_caches()

    return install


def assert_failed_cleanly(schema, backup_id, code, s3_server, bucket) -> dict:
    done = record(schema, backup_id)
    assert done["status"] == "failed", done
    assert done["error_code"] == code, done
    assert done["error"] and "postgresql://" not in done["error"]
    assert objects(s3_server, bucket, schema) == []
    assert pending_uploads(s3_server, bucket, schema) == []
    return done


def test_pg_dump_error_fails_the_backup_with_its_reason(
    clinic_factory, sqs, s3_server, bucket, database_url, monkeypatch
):
    # Given a table locked by the clinic app, and a short lock wait
    monkeypatch.setenv("DUMP_LOCK_WAIT_TIMEOUT", "1s")
    reset_caches()
    schema = clinic_factory()
    blocker = psycopg2.connect(database_url)
    cur = blocker.cursor()
    cur.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, "patients"))
    )
    try:
        backup = start(schema)
        assert sqs.drain_into_worker() == [{"batchItemFailures": []}]
    finally:
        blocker.rollback()
        blocker.close()
    done = assert_failed_cleanly(schema, backup["id"], "dump_failed", s3_server, bucket)
    assert "lock" in done["error"]
    # the clinic's lock is released: a new backup is accepted and succeeds
    again = start(schema)
    sqs.drain_into_worker()
    assert record(schema, again["id"])["status"] == "completed"


def test_pg_dump_dying_mid_stream_aborts_the_multipart_upload(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump
):
    # pg_dump writes a real archive start, then 20 MB more (2+ multipart parts), then dies
    fake_pg_dump('"$REAL" "$@"; head -c 20000000 /dev/urandom; exit 3\n')
    schema = clinic_factory()
    backup = start(schema)
    sqs.drain_into_worker()
    done = assert_failed_cleanly(schema, backup["id"], "dump_failed", s3_server, bucket)
    assert "exit code 3" in done["error"]


def test_pg_dump_timeout_fails_the_backup(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump, monkeypatch
):
    fake_pg_dump('"$REAL" "$@"; sleep 30\n')
    monkeypatch.setenv("DUMP_TIMEOUT_SECONDS", "2")
    reset_caches()
    schema = clinic_factory()
    backup = start(schema)
    sqs.drain_into_worker()
    assert_failed_cleanly(schema, backup["id"], "dump_timeout", s3_server, bucket)


@pytest.mark.parametrize("body", ["exit 0\n", "echo 'not an archive at all, just text'; exit 0\n"])
def test_empty_or_foreign_output_is_an_invalid_archive(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump, body
):
    fake_pg_dump(body)
    schema = clinic_factory()
    backup = start(schema)
    sqs.drain_into_worker()
    assert_failed_cleanly(schema, backup["id"], "archive_invalid", s3_server, bucket)


def test_an_archive_naming_another_schema_is_refused(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump
):
    other = clinic_factory()
    # a pg_dump that (wrongly) also dumps another clinic
    fake_pg_dump(f'exec "$REAL" "$@" --schema={other}\n')
    schema = clinic_factory()
    backup = start(schema)
    sqs.drain_into_worker()
    done = assert_failed_cleanly(
        schema, backup["id"], "foreign_objects_in_archive", s3_server, bucket
    )
    assert other in done["error"]


def test_a_server_newer_than_the_bundled_pg_dump_is_refused(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump
):
    fake_pg_dump(
        'if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) 14.11"; exit 0; fi\n'
        'exec "$REAL" "$@"\n',
        version_passthrough=False,
    )
    schema = clinic_factory()
    backup = start(schema)
    sqs.drain_into_worker()
    done = assert_failed_cleanly(
        schema, backup["id"], "server_version_unsupported", s3_server, bucket
    )
    assert "14" in done["error"]


def test_storage_failing_mid_upload_leaves_no_object(
    clinic_factory, sqs, s3_server, bucket, fake_pg_dump
):
    from botocore.exceptions import EndpointConnectionError

    # a 20 MB stream (3 parts at 8 MB); the store fails on the second part
    fake_pg_dump('"$REAL" "$@"; head -c 20000000 /dev/urandom; exit 0\n')
    schema = clinic_factory()
    storage = function_module("create_backup").fn.services().storage
    parts = []

    def fail_second_part(**kwargs):
        parts.append(kwargs["params"]["PartNumber"])
        if kwargs["params"]["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url="http://storage")

    storage.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_second_part)
    backup = start(schema)
    sqs.drain_into_worker()
    assert 2 in parts
    assert_failed_cleanly(schema, backup["id"], "storage_failed", s3_server, bucket)


def test_a_redelivered_job_runs_once(clinic_factory, sqs, s3_server, bucket):
    schema = clinic_factory()
    backup = start(schema)
    (message,) = sqs.receive()
    # the same message delivered twice (SQS is at-least-once), then once more later
    event = {
        "Records": [
            json.loads(json.dumps(r))
            for r in [
                {
                    "messageId": "m1",
                    "body": message["Body"],
                    "eventSource": "aws:sqs",
                    "receiptHandle": "r",
                    "attributes": {},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q",
                    "awsRegion": "eu-west-1",
                }
            ]
            * 2
        ]
    }
    assert invoke("create_backup", event) == {"batchItemFailures": []}
    assert invoke("create_backup", json.loads(message["Body"]))["status"] == "skipped"
    assert record(schema, backup["id"])["status"] == "completed"
    assert len([k for k in objects(s3_server, bucket, schema) if k.endswith(".dump.age")]) == 1
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE action = 'backup.run'").format(
                sql.Identifier(schema, "backup_audit")
            )
        )
        assert cur.fetchone()[0] == 1


def test_an_invalid_message_is_reported_as_a_batch_failure(sqs):
    event = {
        "Records": [
            {
                "messageId": "bad-1",
                "body": '{"kind": "backup", "schema": "x y"}',
                "eventSource": "aws:sqs",
                "receiptHandle": "r",
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q",
                "awsRegion": "eu-west-1",
            }
        ]
    }
    assert invoke("create_backup", event) == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}


def test_concurrent_creates_for_one_clinic_accept_exactly_one(clinic_factory, sqs):
    schema = clinic_factory()
    token = mint(schema)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def create() -> None:
        event = load_event("create_backup/post_backups.json", token=token, body=None)
        barrier.wait()
        statuses.append(call("create_backup", event).status)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] + [409] * 7
    assert len(sqs.receive()) == 1


def test_the_lock_is_enforced_by_the_database_not_only_in_code(clinic_factory, database_url):
    schema = clinic_factory()
    start(schema)
    with (
        psycopg2.connect(database_url) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.errors.UniqueViolation),
    ):
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (kind, ref_id, acquired_at) "
                "VALUES ('restore', gen_random_uuid(), now())"
            ).format(sql.Identifier(schema, "backup_operation_lock"))
        )

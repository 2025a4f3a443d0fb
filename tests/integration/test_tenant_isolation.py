"""No clinic can see or touch another's backups, whatever it puts in its token or body."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from psycopg2 import sql

from tests.helpers import call, decrypt, invoke, load_event, mint, register_clinic_key

pytestmark = pytest.mark.usefixtures("app_env")


def backup(schema: str, sqs) -> dict:
    reply = call(
        "create_backup",
        load_event("create_backup/post_backups.json", token=mint(schema), body=None),
    )
    assert reply.status == 202, reply.body
    sqs.drain_into_worker()
    done = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=mint(schema), backup_id=reply.body["id"]),
    ).body
    assert done["status"] == "completed", done
    return done


def test_another_clinics_backup_id_is_404_everywhere(clinic_factory, sqs):
    # Given a completed backup of clinic A
    a, b = clinic_factory(), clinic_factory()
    record = backup(a, sqs)
    intruder = mint(b, "admin")

    # When clinic B's admin uses A's id on every route
    for function, sample in (
        ("list_backups", "list_backups/get_backup.json"),
        ("download_backup", "download_backup/get_download.json"),
        ("delete_backup", "delete_backup/delete_backup.json"),
    ):
        reply = call(function, load_event(sample, token=intruder, backup_id=record["id"]))
        # Then it does not exist for B
        assert (reply.status, reply.error_code) == (404, "backup_not_found"), (function, reply.body)

    # And A's backup is untouched and not in B's list
    assert (
        call(
            "list_backups",
            load_event("list_backups/get_backup.json", token=mint(a), backup_id=record["id"]),
        ).body["status"]
        == "completed"
    )
    page = call("list_backups", load_event("list_backups/get_backups.json", token=intruder)).body
    assert page["items"] == []


def test_headers_path_and_body_cannot_choose_the_clinic(clinic_factory, sqs):
    a, b = clinic_factory(), clinic_factory()
    event = load_event(
        "create_backup/post_backups.json",
        token=mint(a),
        body=None,
        headers={"x-tenant": b, "x-schema": b, "x-forwarded-host": f"{b}.clinic.test"},
    )
    event["queryStringParameters"] = {"schema": b, "tenant": b}
    reply = call("create_backup", event)
    assert reply.status == 202
    (message,) = sqs.receive()
    assert f'"schema": "{a}"' in message["Body"]


def test_schema_name_injection_in_the_claim_is_refused(clinic_factory, db):
    victim = clinic_factory()
    for tenant in (
        f'{victim}"; DROP SCHEMA "{victim}" CASCADE; --',
        f"{victim} ",
        f"{victim}\x00",
        f"../{victim}",
        f"{victim}/..",
    ):
        reply = call("list_backups", load_event("list_backups/get_me.json", token=mint(tenant)))
        assert (reply.status, reply.error_code) == (403, "clinic_not_available")
    with db.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (victim,))
        assert cur.fetchone() is not None


def test_a_clinic_named_like_another_in_other_case_never_dumps_the_other(
    clinic_factory, sqs, s3_server, bucket, pg_bin_dir, tmp_path
):
    # Given two clinics whose names differ only in case (both valid, quoted identifiers)
    lower = clinic_factory(f"clinica_caso_{tmp_path.name[-6:].lower()}")
    upper = clinic_factory(lower.replace("clinica_caso", "Clinica_Caso"), patients=50)
    assert lower != upper and lower.lower() == upper.lower()

    # When the upper-case clinic backs up
    identity = register_clinic_key(upper)
    record = backup(upper, sqs)
    download = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=mint(upper), backup_id=record["id"]),
    ).body
    archive = tmp_path / "caso.dump"
    archive.write_bytes(decrypt(httpx.get(download["url"], timeout=30).content, identity))

    # Then its archive names only its own schema, and the object lives under its own prefix
    listing = subprocess.run(
        [f"{pg_bin_dir}/pg_restore", "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"TABLE DATA {upper} patients" in listing
    assert f" {lower} " not in listing
    keys = [
        o["Key"]
        for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{upper}/")["Contents"]
    ]
    assert keys and all(k.startswith(f"{upper}/") for k in keys)
    assert (
        s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{lower}/").get("Contents")
        is None
    )


def test_a_key_outside_the_clinic_prefix_is_never_signed_or_deleted(
    clinic_factory, sqs, db, s3_server, bucket, logs
):
    # Given two clinics with a backup each, and A's record tampered to point at B's object
    a, b = clinic_factory(), clinic_factory()
    register_clinic_key(a)
    mine, theirs = backup(a, sqs), backup(b, sqs)
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT storage_key FROM {} WHERE id = %s").format(
                sql.Identifier(b, "backup_records")
            ),
            (theirs["id"],),
        )
        (their_key,) = cur.fetchone()
        cur.execute(
            sql.SQL("UPDATE {} SET storage_key = %s WHERE id = %s").format(
                sql.Identifier(a, "backup_records")
            ),
            (their_key, mine["id"]),
        )

    # When A's admin downloads it
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=mint(a), backup_id=mine["id"]),
    )
    # Then nothing is signed
    assert (reply.status, reply.error_code) == (500, "internal_error")
    assert "url" not in reply.body
    assert "outside the clinic prefix" in logs.text

    # And deleting it is refused before anything changes
    reply = call(
        "delete_backup",
        load_event("delete_backup/delete_backup.json", token=mint(a), backup_id=mine["id"]),
    )
    assert (reply.status, reply.error_code) == (500, "internal_error")
    with db.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT status FROM {} WHERE id = %s").format(
                sql.Identifier(a, "backup_records")
            ),
            (mine["id"],),
        )
        assert cur.fetchone() == ("completed",)
        # And even a record marked deleted behind our back is never purged across clinics
        cur.execute(
            sql.SQL("UPDATE {} SET status = 'deleted', deleted_at = now() WHERE id = %s").format(
                sql.Identifier(a, "backup_records")
            ),
            (mine["id"],),
        )
    from datetime import timedelta

    from clinic_backups.domain.errors import ForeignKeyPrefix
    from clinic_backups.usecases import backups as service
    from clinic_backups.wiring.factory import build_services
    from clinic_backups.wiring.settings import DeleteBackupSettings, get_settings

    svc = build_services(get_settings(DeleteBackupSettings))
    later = svc.clock.now() + timedelta(days=30)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    with pytest.raises(ForeignKeyPrefix):
        service.purge_deleted(svc, a)
    s3_server.client().head_object(Bucket=bucket, Key=their_key)


def test_a_forged_job_for_another_clinic_runs_nothing(clinic_factory, sqs, s3_server, bucket):
    # Given a pending backup of clinic A
    a, b = clinic_factory(), clinic_factory()
    reply = call(
        "create_backup", load_event("create_backup/post_backups.json", token=mint(a), body=None)
    )
    pending_id = reply.body["id"]
    sqs.receive()  # the genuine job stays invisible for now

    # When a job names clinic B with A's backup id, or an unknown or inactive clinic
    inactive = clinic_factory(active=False)
    for schema in (b, inactive):
        result = invoke(
            "create_backup",
            {"kind": "backup", "schema": schema, "backup_id": pending_id, "trigger": "manual"},
        )
        # Then nothing runs
        assert result["status"] == "skipped"
    # A message with a token (or any unknown field) is not a job at all
    from clinic_backups.edge.jobs import InvalidJob

    with pytest.raises(InvalidJob):
        invoke(
            "create_backup",
            {
                "kind": "backup",
                "schema": "no_such_clinic_anywhere",
                "backup_id": pending_id,
                "trigger": "manual",
                "token": "x",
            },
        )
    for schema in (a, b, inactive):
        assert (
            s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/").get("Contents")
            is None
        )
    assert (
        call(
            "list_backups",
            load_event("list_backups/get_backup.json", token=mint(a), backup_id=pending_id),
        ).body["status"]
        == "pending"
    )

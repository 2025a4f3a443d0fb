"""The Supabase Storage adapter, end to end: uploads through the S3 endpoint (SeaweedFS here,
as Supabase's own S3 endpoint in production), signed download URLs and deletes through
storage3 against the local Supabase Storage API server (devstack/supabase_storage.py: the
real server cannot run here; that one follows its routes and error shapes)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from clinic_backups.usecases import backups as service
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import DeleteBackupSettings, get_settings

from tests.helpers import call, load_event, mint, register_clinic_key, reset_caches


@pytest.fixture
def supabase(supabase_env):
    """The product on the Supabase stand-in: uploads through its S3 endpoint (the proxy that
    enforces Supabase's limits), signed URLs and deletes through its REST API."""
    return supabase_env.rest


def test_signed_supabase_url_downloads_the_backup_and_delete_purges_it(
    supabase, supabase_env, clinic_factory, sqs, s3_server, bucket, logs
):
    schema = clinic_factory()
    token = mint(schema)
    register_clinic_key(schema)
    created = call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=None)
    )
    sqs.drain_into_worker()
    done = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=token, backup_id=created.body["id"]),
    ).body
    assert done["status"] == "completed"
    # The archive and its manifest went through "Supabase's S3 endpoint" (the stand-in's).
    uploads = [r for r in supabase_env.s3.seen if f"/{schema}/" in r.path and r.method == "PUT"]
    assert uploads and all(r.status == 200 for r in uploads)

    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    assert reply.status == 200
    url = reply.body["url"]
    assert url.startswith(f"{supabase.url}/storage/v1/object/sign/{bucket}/{schema}/")
    assert "token=" in url and f"download={done['file_name']}" in url
    fetched = httpx.get(url, timeout=30)
    assert fetched.status_code == 200
    assert done["file_name"] in fetched.headers["content-disposition"]
    assert hashlib.sha256(fetched.content).hexdigest() == done["sha256"]
    # the signed URL appears in the response only, never in a log line
    assert url.split("token=")[1][:40] not in logs.text

    # a token for this key does not open another key
    other = url.replace(f"/{schema}/", "/otra_clinica/")
    assert httpx.get(other, timeout=30).status_code >= 400

    # soft delete, then the purge goes through storage3 remove()
    assert (
        call(
            "delete_backup",
            load_event("delete_backup/delete_backup.json", token=token, backup_id=done["id"]),
        ).status
        == 204
    )
    svc = build_services(get_settings(DeleteBackupSettings))
    later = svc.clock.now() + timedelta(days=8)
    svc.clock = type("Later", (), {"now": staticmethod(lambda: later)})()
    assert service.purge_deleted(svc, schema) == 1
    assert (
        s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/").get("Contents")
        is None
    )


def test_supabase_errors_become_503_not_a_stack_trace(supabase, clinic_factory, sqs, monkeypatch):
    schema = clinic_factory()
    token = mint(schema)
    register_clinic_key(schema)
    created = call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=None)
    )
    sqs.drain_into_worker()
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "not-the-service-key")
    reset_caches()
    reply = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=created.body["id"]),
    )
    assert (reply.status, reply.error_code) == (503, "service_unavailable")
    assert "Traceback" not in str(reply.body)


def test_supabase_settings_must_be_complete(monkeypatch, app_env):
    monkeypatch.setenv("STORAGE_BACKEND", "supabase")
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    reset_caches()
    from clinic_backups.domain.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="SUPABASE_URL"):
        get_settings(DeleteBackupSettings)


def test_the_stand_in_refuses_an_archive_over_the_bucket_limit(
    supabase_env, clinic_factory, sqs, s3_server, bucket
):
    """What issue 19 says no local test could see: Supabase refuses an upload over the
    bucket's file_size_limit (EntityTooLarge, 413) and nothing is stored. (How the product
    reports it is the layer's business.)"""
    supabase_env.buckets.update(bucket, file_size_limit=1_000)
    schema = clinic_factory(patients=200)
    token = mint(schema)
    register_clinic_key(schema)
    created = call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=None)
    )
    sqs.drain_into_worker()
    done = call(
        "list_backups",
        load_event("list_backups/get_backup.json", token=token, backup_id=created.body["id"]),
    ).body
    assert done["status"] == "failed"
    refused = [r for r in supabase_env.s3.seen if f"/{schema}/" in r.path and r.status == 413]
    assert refused, "the stand-in's S3 endpoint refused nothing"
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    assert listed.get("Contents") is None

"""A backup whose file is gone from storage says so: 410 `backup_file_missing`, the record
marked (`file_missing_at`); a store that is down stays a 503 `service_unavailable`.

On both backends: SeaweedFS as the S3 store, and the Supabase stand-in (whose S3 errors are
namespaced XML, so botocore leaves `Error.Code` empty: only the HTTP status says 404).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from clinic_backups.domain.errors import FileMissing
from clinic_backups.domain.names import MANIFEST_SUFFIX
from clinic_backups.usecases import archive
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import RestoreSettings, get_settings

from tests.helpers import call, load_event, mint, register_clinic_key, reset_caches


@pytest.fixture(params=["s3", "supabase"])
def backend(request: pytest.FixtureRequest, app_env: dict[str, str]) -> str:
    if request.param == "supabase":
        request.getfixturevalue("supabase_env")
    return str(request.param)


def _completed_backup(schema: str, token: str, sqs: Any) -> dict[str, Any]:
    register_clinic_key(schema)
    created = call(
        "create_backup", load_event("create_backup/post_backups.json", token=token, body=None)
    )
    sqs.drain_into_worker()
    return _get(token, created.body["id"])


def _get(token: str, backup_id: str) -> dict[str, Any]:
    reply = call(
        "list_backups", load_event("list_backups/get_backup.json", token=token, backup_id=backup_id)
    )
    assert reply.status == 200, reply.body
    return dict(reply.body)


def _archive_key(s3_server: Any, bucket: str, schema: str) -> str:
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    (key,) = [o["Key"] for o in listed["Contents"] if not o["Key"].endswith(MANIFEST_SUFFIX)]
    return str(key)


def test_a_missing_file_is_410_and_the_backup_is_marked_a_store_down_is_503(
    backend: str,
    clinic_factory: Any,
    sqs: Any,
    s3_server: Any,
    bucket: str,
    logs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = clinic_factory(patients=20)
    token = mint(schema)
    done = _completed_backup(schema, token, sqs)
    assert done["status"] == "completed" and done["file_missing_at"] is None

    # A store that does not answer is a 503, and the backup is not marked: nothing says its
    # file is gone. (The download asks SeaweedFS, or on Supabase the Storage API alone: it
    # checks the file and signs the URL, so the S3 endpoint is not in its path.)
    endpoint = get_settings(RestoreSettings).s3_endpoint_url
    supabase_url = os.environ.get("SUPABASE_URL", "")
    if backend == "supabase":
        monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:1")
    else:
        monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:1/storage/v1/s3")
    reset_caches()
    down = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    assert down.status == 503 and down.error_code == "service_unavailable", down.body
    assert _get(token, done["id"])["file_missing_at"] is None
    monkeypatch.setenv("S3_ENDPOINT_URL", str(endpoint))
    if backend == "supabase":
        monkeypatch.setenv("SUPABASE_URL", supabase_url)
    reset_caches()

    # Given the file removed from the store behind the product's back
    key = _archive_key(s3_server, bucket, schema)
    s3_server.client().delete_object(Bucket=bucket, Key=key)

    # When the clinic asks for its download, a restore or a verification
    download = call(
        "download_backup",
        load_event("download_backup/get_download.json", token=token, backup_id=done["id"]),
    )
    restore = call(
        "restore_backup",
        load_event(
            "restore_backup/post_restore.json",
            token=token,
            backup_id=done["id"],
            body={"confirm": schema},
        ),
    )
    verify = call(
        "restore_backup",
        load_event("restore_backup/post_verify.json", token=token, backup_id=done["id"]),
    )

    # Then each is a 410 backup_file_missing (not a 503), without the storage key
    for reply in (download, restore, verify):
        assert reply.status == 410, reply.body
        assert reply.error_code == "backup_file_missing"
        assert reply.body["error"]["message"] == "The file of this backup is no longer in storage."
        assert key not in str(reply.body)
    # and the backup is marked, still listed
    marked = _get(token, done["id"])
    assert marked["status"] == "completed" and marked["file_missing_at"] is not None
    assert "backup file missing from storage" in logs.text

    # A job reading the archive (restore, verification, light check) fails the same way.
    svc = build_services(get_settings(RestoreSettings))
    record = svc.records.get(schema, uuid.UUID(done["id"]))
    assert record is not None
    with pytest.raises(FileMissing) as missing:
        archive.open_archive(svc, schema, record)
    assert missing.value.error_code == "backup_file_missing"

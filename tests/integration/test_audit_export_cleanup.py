"""The activity log's CSV exports do not pile up: the sweeper deletes each clinic's exports
older than AUDIT_EXPORT_TTL_HOURS, through the clinic's ScopedStorage, and keeps everything
else (fresh exports, every backup object, other clinics' exports) — on the real database and
the real S3 store, the exports written by the real `POST /audit/export` route; the operator's
sweep and the hourly scheduler (in each clinic's daily turn) alike."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from clinic_backups.domain.errors import ConfigurationError
from clinic_backups.usecases import sweeper
from clinic_backups.usecases.scheduler import ORPHAN_ROTATION_HOURS
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import OperatorSettings, get_settings

from tests.helpers import FixedClock, function_module, invoke, load_event, register_clinic_key
from tests.integration.restore_support import backup
from tests.integration.test_activity_log import export

pytestmark = pytest.mark.usefixtures("app_env")


def keys_of(s3_server, bucket: str, schema: str) -> set[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{schema}/")
    return {o["Key"] for o in listing.get("Contents", [])}


def test_an_expired_export_is_removed_and_fresh_exports_and_backups_are_kept(
    clinic_factory, sqs, s3_server, bucket
):
    # Given a clinic with a completed backup (archive + manifest) and an activity export,
    # and another clinic with an export of its own
    clinic, other = clinic_factory(patients=3), clinic_factory(patients=3)
    for schema in (clinic, other):
        register_clinic_key(schema)
    record = backup(clinic, sqs)
    written = datetime.now(UTC)
    mine = export(clinic)
    theirs = export(other)
    assert mine.status == 200 and theirs.status == 200, (mine.body, theirs.body)
    my_export = f"{clinic}/audit-exports/{mine.body['file_name']}"
    their_export = f"{other}/audit-exports/{theirs.body['file_name']}"
    backup_objects = keys_of(s3_server, bucket, clinic) - {my_export}
    assert record["file_name"] and any(k.endswith(".manifest.json") for k in backup_objects)
    assert their_export in keys_of(s3_server, bucket, other)

    svc = build_services(get_settings(OperatorSettings))
    assert svc.config.audit_export_ttl == timedelta(hours=24)  # the default

    # When the sweeper runs while the export is younger than the TTL
    svc.clock = FixedClock(written + timedelta(hours=23))
    report = sweeper.sweep(svc, [clinic], orphans=False)

    # Then nothing is removed
    assert report.exports_removed == 0 and report.errors == 0
    assert keys_of(s3_server, bucket, clinic) == backup_objects | {my_export}

    # When it runs for the clinic once the export is older than the TTL
    svc.clock = FixedClock(written + timedelta(hours=25))
    report = sweeper.sweep(svc, [clinic], orphans=False)

    # Then only that clinic's export is gone: every backup object (older still) is kept,
    # and the other clinic's export is not touched by the clinic's sweep
    assert report.exports_removed == 1 and report.errors == 0
    assert keys_of(s3_server, bucket, clinic) == backup_objects
    assert their_export in keys_of(s3_server, bucket, other)

    # When the hourly scheduler runs in the other clinic's daily turn, past its TTL
    turn = zlib.crc32(other.encode()) % ORPHAN_ROTATION_HOURS
    at = (written + timedelta(hours=25)).replace(minute=30, second=0, microsecond=0)
    while at.hour != turn:
        at += timedelta(hours=1)
    scheduler = function_module("scheduler").fn.services()
    scheduler.clock = FixedClock(at)
    run = invoke("scheduler", load_event("scheduler/scheduled_event.json"))

    # Then that clinic's export is gone too, and the first clinic's backup objects stay
    assert run["sweep"]["exports_removed"] >= 1
    assert their_export not in keys_of(s3_server, bucket, other)
    assert keys_of(s3_server, bucket, clinic) == backup_objects


def test_the_ttl_is_a_setting_that_outlives_the_signed_url(monkeypatch):
    monkeypatch.setenv("AUDIT_EXPORT_TTL_HOURS", "48")
    get_settings.cache_clear()
    assert build_services(get_settings(OperatorSettings)).config.audit_export_ttl == timedelta(
        hours=48
    )
    # an hour or less could remove an export while its link (DOWNLOAD_URL_TTL ≤ 1 h) still works
    monkeypatch.setenv("AUDIT_EXPORT_TTL_HOURS", "1")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match=r"(?i)audit_export_ttl_hours"):
        get_settings(OperatorSettings)
    get_settings.cache_clear()

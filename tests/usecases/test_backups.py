"""The backup use cases (usecases/backups.py) against the fakes: who may do what, the
clinic's lock, quotas, the worker's status transitions, downloads, deletes and recovery."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta

import pyrage
import pytest
from clinic_backups.domain.errors import (
    BackupFileMissing,
    BackupNotCancellable,
    BackupNotCompleted,
    BackupNotFound,
    BackupPurged,
    BackupRunError,
    ClinicGone,
    EncryptionKeyRequired,
    Forbidden,
    InvalidCursor,
    OperationInProgress,
    QueueUnavailable,
    QuotaExceeded,
    ValidationFailed,
)
from clinic_backups.domain.models import (
    BackupSettingsUpdate,
    BackupStatus,
    Clinic,
    CreateBackupRequest,
    KeepRequest,
    ListBackupsQuery,
    Permission,
    RegisterKeyRequest,
    Role,
    Trigger,
)
from clinic_backups.domain.names import manifest_key
from clinic_backups.usecases import backups, keys

from tests.fakes import (
    CLINIC,
    OTHER_CLINIC,
    PLATFORM_IDENTITY,
    Fakes,
    caller,
    fake_services,
)
from tests.fakes.others import ARCHIVE_HEAD
from tests.usecases.conftest import actions, completed_backup, last_backup_job

ADMIN = caller(Role.ADMIN)
STAFF = caller(Role.STAFF, user_id="u-staff")
CLINIC_KEY = pyrage.x25519.Identity.generate()


def register_clinic_key(fakes: Fakes) -> None:
    keys.register_key(
        fakes.svc,
        ADMIN,
        RegisterKeyRequest(label="Portátil", public_key=str(CLINIC_KEY.to_public())),
    )


# --- creating -----------------------------------------------------------------------------


def test_create_backup_makes_a_pending_record_queues_its_job_and_audits_it(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, STAFF, CreateBackupRequest(note="antes de migrar"))

    assert record.status == BackupStatus.PENDING
    assert record.trigger == Trigger.MANUAL and record.encryption == "age"
    assert record.storage_key.startswith(f"{CLINIC}/")
    job = last_backup_job(fakes)
    assert (job.schema_name, job.backup_id) == (CLINIC, record.id)
    assert actions(fakes) == [("backup.create", "accepted")]
    assert fakes.metrics.total("BackupCreated") == 1


def test_create_backup_without_the_permission_is_forbidden_and_audited(fakes: Fakes) -> None:
    reader = caller(Role.STAFF, permissions=frozenset({Permission.LIST}))

    with pytest.raises(Forbidden):
        backups.create_backup(fakes.svc, reader, CreateBackupRequest())

    assert fakes.dispatcher.jobs == []
    assert actions(fakes) == [("backup.create", "denied")]


def test_a_second_backup_while_one_is_pending_is_refused_with_operation_in_progress(
    fakes: Fakes,
) -> None:
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(OperationInProgress):
        backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    assert len(fakes.dispatcher.jobs) == 1
    assert actions(fakes)[-1] == ("backup.create", "rejected")


def test_manual_backups_beyond_the_daily_quota_are_refused(fakes: Fakes) -> None:
    # Given a quota of two manual backups a day, both made this morning
    fakes.reconfigure(manual_backups_per_day=2)
    completed_backup(fakes)
    completed_backup(fakes)

    # When a third is asked for, then it is refused and audited
    with pytest.raises(QuotaExceeded):
        backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    assert fakes.records.tables(CLINIC).audit[-1].details == {"reason": "quota_exceeded"}

    # And a day later the quota is free again
    fakes.clock.advance(days=1)
    assert backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest()).status == "pending"


def test_a_job_the_queue_refuses_fails_its_record_and_frees_the_clinic(fakes: Fakes) -> None:
    fakes.dispatcher.refuse = QueueUnavailable()

    with pytest.raises(QueueUnavailable):
        backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    (record,) = fakes.records.tables(CLINIC).records.values()
    assert record.status == BackupStatus.FAILED and record.error_code == "internal_error"
    assert fakes.records.tables(CLINIC).lock is None
    fakes.dispatcher.refuse = None
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())  # the clinic is free


# --- the worker ---------------------------------------------------------------------------


def test_a_backup_job_stores_the_archive_encrypted_to_the_platform_and_the_clinic(
    fakes: Fakes,
) -> None:
    # Given a clinic with its own key
    register_clinic_key(fakes)

    # When a backup is made
    done = completed_backup(fakes)

    # Then the archive is stored under the clinic's prefix, and both keys open it
    stored = fakes.storage.objects[done.storage_key]
    for identity in (PLATFORM_IDENTITY, CLINIC_KEY):
        assert pyrage.decrypt(stored, [identity]).startswith(ARCHIVE_HEAD)
    assert done.size_bytes == len(stored)
    assert [r["kind"] for r in done.recipients] == ["platform", "clinic"]
    # The manifest beside it describes it, the lock is free and the light check is queued
    manifest = json.loads(fakes.storage.objects[manifest_key(done.storage_key)])
    assert (manifest["id"], manifest["sha256"]) == (str(done.id), done.sha256)
    assert fakes.records.tables(CLINIC).lock is None
    assert fakes.dispatcher.kinds() == ["backup", "verify_light"]
    assert ("backup.run", "completed") in actions(fakes)


def test_a_repeated_delivery_of_a_backup_job_does_nothing(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    again = backups.run_backup_job(fakes.svc, last_backup_job(fakes))

    assert again is None
    assert len(fakes.dumper.runs) == 1
    assert fakes.records.get(CLINIC, done.id) == done


def test_a_job_for_a_clinic_no_longer_active_fails_without_dumping(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    fakes.tenants.clinics[CLINIC] = Clinic(CLINIC, "Clínica Norte", active=False)

    assert backups.run_backup_job(fakes.svc, last_backup_job(fakes)) is None

    failed = fakes.records.get(CLINIC, record.id)
    assert failed is not None and failed.status == BackupStatus.FAILED
    assert failed.error_code == ClinicGone.error_code == "clinic_not_available"
    assert fakes.dumper.runs == []


def test_a_failing_dump_fails_the_backup_leaves_no_object_and_frees_the_clinic(
    fakes: Fakes,
) -> None:
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    fakes.dumper.fail = BackupRunError("pg_dump exited with status 1")

    failed = backups.run_backup_job(fakes.svc, last_backup_job(fakes))

    assert failed is not None and failed.status == BackupStatus.FAILED
    assert failed.error == "pg_dump exited with status 1"
    assert fakes.storage.objects == {}
    assert fakes.records.tables(CLINIC).lock is None
    assert actions(fakes)[-1] == ("backup.run", "failed")
    assert fakes.metrics.total("BackupFailed") == 1


def test_a_cancel_heard_before_completion_ends_the_backup_cancelled_with_nothing_stored(
    fakes: Fakes,
) -> None:
    # Given a running backup whose cancel arrives after the upload, before it completes
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    def cancel_while_running() -> None:
        assert backups.cancel_backup(fakes.svc, ADMIN, str(record.id)).status == "running"

    fakes.dumper.during = cancel_while_running

    # When the job finishes
    ended = backups.run_backup_job(fakes.svc, last_backup_job(fakes))

    # Then the cancel wins: nothing is stored and the clinic is free
    assert ended is not None and ended.status == BackupStatus.CANCELLED
    assert fakes.storage.objects == {}
    assert fakes.records.tables(CLINIC).lock is None
    assert ("backup.cancel", "requested") in actions(fakes)
    assert actions(fakes)[-1] == ("backup.run", "cancelled")


def test_a_job_whose_lease_expired_is_taken_over_and_removes_what_it_stored(
    fakes: Fakes,
) -> None:
    # Given a backup whose worker goes silent past its lease while dumping, and a new backup
    # request meanwhile (it takes the clinic over)
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    first = last_backup_job(fakes)
    taker: list[object] = []

    def silent_then_taken_over() -> None:
        fakes.clock.advance(seconds=fakes.svc.config.policy.lock_lease_seconds + 1)
        taker.append(backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest()))

    fakes.dumper.during = silent_then_taken_over

    # When the first job tries to complete
    ended = backups.run_backup_job(fakes.svc, first)

    # Then it was failed as stale by the taker, and left nothing in storage
    assert ended is not None and ended.status == BackupStatus.FAILED
    assert ended.error_code == "stale"
    assert fakes.storage.objects == {}
    assert len(taker) == 1
    lock = fakes.records.tables(CLINIC).lock
    assert lock is not None and lock.ref_id != first.backup_id


# --- reading ------------------------------------------------------------------------------


def test_list_pages_newest_first_and_the_cursor_walks_every_backup_once(fakes: Fakes) -> None:
    made = [completed_backup(fakes) for _ in range(5)]

    seen, cursor = [], None
    while True:
        page = backups.list_backups(fakes.svc, STAFF, ListBackupsQuery(limit=2, cursor=cursor))
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [r.id for r in reversed(made)]


def test_only_admins_may_list_deleted_backups(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))

    with pytest.raises(Forbidden):
        backups.list_backups(fakes.svc, STAFF, ListBackupsQuery(include_deleted=True))
    assert backups.list_backups(fakes.svc, STAFF, ListBackupsQuery()).items == []
    page = backups.list_backups(fakes.svc, ADMIN, ListBackupsQuery(status=BackupStatus.DELETED))
    assert [r.id for r in page.items] == [done.id]


def test_a_cursor_that_was_never_issued_is_invalid(fakes: Fakes) -> None:
    with pytest.raises(InvalidCursor):
        backups.list_backups(fakes.svc, ADMIN, ListBackupsQuery(cursor="bm90LWEtY3Vyc29y"))


def test_another_clinics_backup_is_not_found_by_get_download_delete_or_cancel(
    fakes: Fakes,
) -> None:
    theirs = completed_backup(fakes, schema=OTHER_CLINIC)
    raw = str(theirs.id)

    for use_case in (
        backups.get_backup,
        backups.request_download,
        backups.delete_backup,
        backups.cancel_backup,
        backups.undelete_backup,
    ):
        with pytest.raises(BackupNotFound):
            use_case(fakes.svc, ADMIN, raw)
    assert fakes.records.get(OTHER_CLINIC, theirs.id) == theirs


def test_an_id_that_is_not_a_uuid_is_not_found(fakes: Fakes) -> None:
    with pytest.raises(BackupNotFound):
        backups.get_backup(fakes.svc, ADMIN, "../../etc/passwd")


# --- downloading ----------------------------------------------------------------------------


def test_download_signs_a_short_lived_url_for_a_backup_the_clinic_can_open(fakes: Fakes) -> None:
    register_clinic_key(fakes)
    done = completed_backup(fakes)

    signed = backups.request_download(fakes.svc, ADMIN, str(done.id))

    assert fakes.storage.signed == [
        (done.storage_key, fakes.svc.config.download_ttl, done.file_name)
    ]
    assert signed.expires_at == fakes.clock.now() + timedelta(seconds=fakes.svc.config.download_ttl)
    assert (signed.sha256, signed.size_bytes) == (done.sha256, done.size_bytes)
    assert [r["label"] for r in signed.recipients] == ["Portátil"]
    assert actions(fakes)[-1] == ("backup.download", "signed")


def test_download_is_refused_to_staff_without_the_download_permission(fakes: Fakes) -> None:
    register_clinic_key(fakes)
    done = completed_backup(fakes)

    with pytest.raises(Forbidden):
        backups.request_download(fakes.svc, STAFF, str(done.id))
    assert fakes.storage.signed == []


def test_download_of_a_backup_only_the_platform_can_open_is_refused(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    with pytest.raises(EncryptionKeyRequired):
        backups.request_download(fakes.svc, ADMIN, str(done.id))
    assert fakes.storage.signed == []


def test_download_of_a_backup_not_completed_is_refused(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(BackupNotCompleted):
        backups.request_download(fakes.svc, ADMIN, str(record.id))


def test_download_of_a_file_gone_from_storage_is_410_and_marks_the_record(fakes: Fakes) -> None:
    register_clinic_key(fakes)
    done = completed_backup(fakes)
    del fakes.storage.objects[done.storage_key]

    with pytest.raises(BackupFileMissing):
        backups.request_download(fakes.svc, ADMIN, str(done.id))

    marked = fakes.records.get(CLINIC, done.id)
    assert marked is not None and marked.file_missing_at == fakes.clock.now()
    assert fakes.storage.signed == []


# --- deleting, undeleting, purging ------------------------------------------------------------


def test_delete_is_soft_says_when_it_purges_and_marks_the_manifest(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    backups.delete_backup(fakes.svc, ADMIN, str(done.id))

    deleted = backups.get_backup(fakes.svc, ADMIN, str(done.id))
    assert deleted.status == BackupStatus.DELETED
    assert deleted.purge_after == fakes.clock.now() + timedelta(
        days=fakes.svc.config.delete_grace_days
    )
    assert done.storage_key in fakes.storage.objects  # the file stays for the grace period
    manifest = json.loads(fakes.storage.objects[manifest_key(done.storage_key)])
    assert manifest["deleted_at"] == fakes.clock.now().isoformat()


def test_staff_may_not_delete_and_a_running_backup_cannot_be_deleted(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(Forbidden):
        backups.delete_backup(fakes.svc, STAFF, str(record.id))
    with pytest.raises(OperationInProgress):
        backups.delete_backup(fakes.svc, ADMIN, str(record.id))
    assert actions(fakes)[-1] == ("backup.delete", "rejected")


def test_a_record_whose_key_left_the_clinics_prefix_is_never_deleted(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.records.put(CLINIC, replace(done, storage_key=f"{OTHER_CLINIC}/x.dump.age"))

    with pytest.raises(Exception, match="outside the clinic prefix"):
        backups.delete_backup(fakes.svc, ADMIN, str(done.id))
    assert fakes.records.get(CLINIC, done.id).status == BackupStatus.COMPLETED  # type: ignore[union-attr]


def test_undelete_within_the_grace_period_completes_the_backup_again(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))
    fakes.clock.advance(days=fakes.svc.config.delete_grace_days - 1)

    back = backups.undelete_backup(fakes.svc, ADMIN, str(done.id))

    assert back.status == BackupStatus.COMPLETED and back.deleted_at is None
    manifest = json.loads(fakes.storage.objects[manifest_key(done.storage_key)])
    assert manifest["deleted_at"] is None


def test_undelete_past_the_grace_period_is_refused_as_purged_without_racing_the_purge(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))
    fakes.clock.advance(days=fakes.svc.config.delete_grace_days)
    fakes.storage.down = True  # the purge may be removing the file: storage is not even asked

    with pytest.raises(BackupPurged):
        backups.undelete_backup(fakes.svc, ADMIN, str(done.id))


def test_undelete_of_a_backup_whose_file_is_gone_is_refused_as_purged(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))
    fakes.storage.objects[done.storage_key] = b"short"

    with pytest.raises(BackupPurged):
        backups.undelete_backup(fakes.svc, ADMIN, str(done.id))
    assert fakes.records.get(CLINIC, done.id).status == BackupStatus.DELETED  # type: ignore[union-attr]


def test_undelete_of_a_failed_backup_is_refused(fakes: Fakes) -> None:
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    fakes.dumper.fail = BackupRunError("boom")
    failed = backups.run_backup_job(fakes.svc, last_backup_job(fakes))
    assert failed is not None

    with pytest.raises(BackupNotCompleted):
        backups.undelete_backup(fakes.svc, ADMIN, str(failed.id))


def test_purge_removes_the_files_only_after_the_grace_period(fakes: Fakes) -> None:
    # Given a deleted backup
    done = completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(done.id))

    # When the purge runs inside the grace period, nothing goes
    fakes.clock.advance(days=fakes.svc.config.delete_grace_days, seconds=-1)
    assert backups.purge_deleted(fakes.svc, CLINIC) == 0
    assert done.storage_key in fakes.storage.objects

    # When it runs once the grace period is over, the archive and manifest go
    fakes.clock.advance(seconds=1)
    assert backups.purge_deleted(fakes.svc, CLINIC) == 1
    assert fakes.storage.objects == {}
    purged = fakes.records.get(CLINIC, done.id)
    assert purged is not None and purged.purged_at == fakes.clock.now()
    assert actions(fakes)[-1] == ("backup.purge", "purged")


# --- cancelling -------------------------------------------------------------------------------


def test_cancel_of_a_pending_backup_ends_it_and_frees_the_clinic(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, STAFF, CreateBackupRequest())

    cancelled = backups.cancel_backup(fakes.svc, STAFF, str(record.id))  # its author

    assert cancelled.status == BackupStatus.CANCELLED
    assert fakes.records.tables(CLINIC).lock is None
    assert backups.run_backup_job(fakes.svc, last_backup_job(fakes)) is None
    assert fakes.dumper.runs == []


def test_staff_may_not_cancel_someone_elses_backup(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(Forbidden):
        backups.cancel_backup(fakes.svc, STAFF, str(record.id))
    assert fakes.records.get(CLINIC, record.id).status == BackupStatus.PENDING  # type: ignore[union-attr]


def test_a_finished_backup_cannot_be_cancelled(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    with pytest.raises(BackupNotCancellable):
        backups.cancel_backup(fakes.svc, ADMIN, str(done.id))


def test_a_pre_restore_backup_cannot_be_cancelled_on_its_own(fakes: Fakes) -> None:
    fakes.records.ensure_schema(CLINIC)
    record = backups.new_backup_record(
        fakes.svc,
        CLINIC,
        uuid.uuid4(),
        trigger=Trigger.PRE_RESTORE,
        actor_id="u-admin",
        actor_name=None,
    )
    fakes.records.put(CLINIC, record)

    with pytest.raises(BackupNotCancellable):
        backups.cancel_backup(fakes.svc, ADMIN, str(record.id))


# --- settings, keep, retention, recovery ----------------------------------------------------


def test_settings_default_to_the_platforms_and_everyone_who_lists_may_read_them(
    fakes: Fakes,
) -> None:
    shown = backups.get_backup_settings(fakes.svc, STAFF)

    assert shown.settings.is_default is True
    assert shown.settings.hour == fakes.svc.config.policy.defaults.hour
    assert shown.next_run_at is not None


def settings_update(**changes: object) -> BackupSettingsUpdate:
    fields: dict[str, object] = {
        "enabled": True,
        "hour": 22,
        "weekdays": [1, 2, 3, 4, 5],
        "time_zone": "Atlantic/Canary",
        "keep_daily": 10,
        "keep_weekly": 4,
        "keep_monthly": 12,
    }
    return BackupSettingsUpdate.model_validate({**fields, **changes})


def test_settings_update_saves_and_audits_only_what_changed(fakes: Fakes) -> None:
    saved = backups.update_backup_settings(fakes.svc, ADMIN, settings_update())

    assert (saved.settings.hour, saved.settings.time_zone, saved.settings.is_default) == (
        22,
        "Atlantic/Canary",
        False,
    )
    assert saved.settings.locale == fakes.svc.config.policy.defaults.locale
    entry = fakes.records.tables(CLINIC).audit[-1]
    assert (entry.action, entry.outcome) == ("settings.update", "saved")
    assert entry.details["changed"]["hour"] == [fakes.svc.config.policy.defaults.hour, 22]
    assert "locale" not in entry.details["changed"]


def test_settings_below_the_platform_floor_or_by_staff_are_refused(fakes: Fakes) -> None:
    floor = fakes.svc.config.policy.min_retention_days

    with pytest.raises(ValidationFailed):
        backups.update_backup_settings(fakes.svc, ADMIN, settings_update(keep_daily=floor - 1))
    with pytest.raises(Forbidden):
        backups.update_backup_settings(fakes.svc, STAFF, settings_update())
    assert fakes.schedules.settings == {}


def test_describe_me_tells_the_clinics_locale_and_time_zone(fakes: Fakes) -> None:
    backups.update_backup_settings(fakes.svc, ADMIN, settings_update(locale="ca-ES"))

    me = backups.describe_me(fakes.svc, STAFF)

    assert (me.locale, me.time_zone, me.caller.role) == ("ca-ES", "Atlantic/Canary", Role.STAFF)
    assert me.replica_configured is False


def test_only_a_completed_backup_can_be_kept_and_a_kept_one_survives_retention(
    fakes: Fakes,
) -> None:
    # Given the platform floor of 7 daily backups and 20 days of scheduled backups, one kept
    backups.update_backup_settings(
        fakes.svc,
        ADMIN,
        settings_update(
            keep_daily=7, keep_weekly=0, keep_monthly=0, weekdays=[1, 2, 3, 4, 5, 6, 7]
        ),
    )
    made = []
    for _ in range(20):
        done = completed_backup(fakes)
        made.append(fakes.records.put(CLINIC, replace(done, trigger=Trigger.SCHEDULED)))
        fakes.clock.advance(days=1)
    kept = backups.set_backup_keep(fakes.svc, ADMIN, str(made[0].id), KeepRequest(keep=True))
    assert kept.keep

    # When retention runs
    plan = backups.apply_retention(fakes.svc, CLINIC)

    # Then the oldest unkept ones are deleted, the kept and the newest stay
    status = {r.id: fakes.records.get(CLINIC, r.id).status for r in made}  # type: ignore[union-attr]
    assert status[made[0].id] == BackupStatus.COMPLETED
    assert status[made[1].id] == BackupStatus.DELETED
    assert all(status[r.id] == BackupStatus.COMPLETED for r in made[-7:])
    assert set(plan.delete) >= {made[1].id}
    assert ("backup.retention", "deleted") in actions(fakes)


def test_a_backup_not_completed_cannot_be_marked_to_keep(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(BackupNotCompleted):
        backups.set_backup_keep(fakes.svc, ADMIN, str(record.id), KeepRequest(keep=True))


def test_records_lost_from_the_database_are_rebuilt_from_the_manifests(fakes: Fakes) -> None:
    # Given two completed backups, one of them deleted, and the records then lost
    first, second = completed_backup(fakes), completed_backup(fakes)
    backups.delete_backup(fakes.svc, ADMIN, str(second.id))
    fakes.records.tables(CLINIC).records.clear()

    # When the records are rebuilt from storage
    report = backups.rebuild_records(fakes.svc, CLINIC)

    # Then both come back as they were (the deleted one still deleted)
    assert (report.manifests, report.inserted, report.missing_objects) == (2, 2, [])
    assert fakes.records.get(CLINIC, first.id).status == BackupStatus.COMPLETED  # type: ignore[union-attr]
    assert fakes.records.get(CLINIC, second.id).status == BackupStatus.DELETED  # type: ignore[union-attr]
    # A second rebuild changes nothing
    assert backups.rebuild_records(fakes.svc, CLINIC).already_present == 2


def test_a_manifest_whose_archive_is_gone_is_reported_not_rebuilt(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.records.tables(CLINIC).records.clear()
    del fakes.storage.objects[done.storage_key]

    report = backups.rebuild_records(fakes.svc, CLINIC)

    assert report.missing_objects == [done.storage_key] and report.inserted == 0


def test_migrate_all_prepares_every_active_clinic_and_lists_unsupported_names() -> None:
    fakes = fake_services()
    fakes.tenants.clinics["cerrada"] = Clinic("cerrada", "Cerrada", active=False)
    fakes.tenants.unsupported = ["Clínica Ñ"]

    result = backups.migrate_all(fakes.svc)

    assert result == {"migrated": [CLINIC, OTHER_CLINIC], "unsupported": ["Clínica Ñ"]}
    assert "cerrada" not in fakes.records.clinics


def test_an_archive_above_the_stores_object_limit_is_stored_and_signed_as_parts(
    fakes: Fakes,
) -> None:
    # Given a store that takes objects of at most 300 bytes, and a clinic key
    fakes.storage.size_limit = 300
    register_clinic_key(fakes)

    # When a backup is made
    done = completed_backup(fakes)

    # Then its archive is stored as parts that join into the whole (its sha256 and size)
    assert done.parts is not None and len(done.parts) > 1
    joined = b"".join(fakes.storage.objects[str(p["key"])] for p in done.parts)
    assert len(joined) == done.size_bytes
    assert done.storage_key not in fakes.storage.objects
    assert all(len(fakes.storage.objects[str(p["key"])]) <= 300 for p in done.parts)
    # And a download signs one URL per part, named in order
    signed = backups.request_download(fakes.svc, ADMIN, str(done.id))
    assert [p.name for p in signed.parts] == [
        f"{done.file_name}.part{n:03d}" for n in range(1, len(done.parts) + 1)
    ]
    # And the records come back from the manifest with their parts
    fakes.records.tables(CLINIC).records.clear()
    assert backups.rebuild_records(fakes.svc, CLINIC).inserted == 1
    assert fakes.records.get(CLINIC, done.id).parts == done.parts  # type: ignore[union-attr]


def test_without_splitting_an_archive_above_the_limit_fails_and_leaves_nothing(
    fakes: Fakes,
) -> None:
    fakes.storage.size_limit = 300
    fakes.reconfigure(split_archives=False)
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    failed = backups.run_backup_job(fakes.svc, last_backup_job(fakes))

    assert failed is not None and failed.status == BackupStatus.FAILED
    assert "splitting archives is off" in (failed.error or "")
    assert fakes.storage.objects == {}

"""Restores, undos and verifications (usecases/restore.py) against the fakes: who may ask,
what is refused before anything is locked, and the job flow with a fake restorer whose swap
commits only after the archive was read to its end and checked."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from clinic_backups.domain.errors import (
    BackupFileMissing,
    BackupNotCompleted,
    BackupNotFound,
    Forbidden,
    OperationInProgress,
    UndoNotAvailable,
    ValidationFailed,
)
from clinic_backups.domain.models import (
    BackupStatus,
    CreateBackupRequest,
    LightVerifyJob,
    ListRestoresQuery,
    RestoreJob,
    RestoreRecord,
    RestoreRequest,
    RestoreStatus,
    Role,
    Trigger,
)
from clinic_backups.domain.names import manifest_key
from clinic_backups.usecases import backups, restore, sweeper

from tests.fakes import CLINIC, OTHER_CLINIC, Fakes, caller
from tests.fakes.others import ARCHIVE_HEAD
from tests.fakes.restores import TABLE_COUNTS
from tests.usecases.conftest import actions, completed_backup, last_backup_job

ADMIN = caller(Role.ADMIN)
STAFF = caller(Role.STAFF, user_id="u-staff")
CONFIRM = RestoreRequest(confirm=CLINIC)


def last_restore_job(fakes: Fakes) -> RestoreJob:
    jobs = [j for j in fakes.dispatcher.jobs if isinstance(j, RestoreJob)]
    assert jobs, "no restore job was queued"
    return jobs[-1]


def restored(fakes: Fakes) -> tuple[RestoreRecord, RestoreRecord]:
    """A completed backup restored over the clinic: (the request, the finished job)."""
    done = completed_backup(fakes)
    requested = restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)
    finished = restore.run_restore_job(fakes.svc, last_restore_job(fakes))
    assert finished is not None
    return requested, finished


# --- requests ---------------------------------------------------------------------------------


def test_a_restore_request_takes_the_clinics_lock_and_queues_the_job(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    job = restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)

    assert (job.status, job.kind.value, job.backup_id) == ("pending", "restore", done.id)
    lock = fakes.records.tables(CLINIC).lock
    assert lock is not None and (lock.kind, lock.ref_id) == ("restore", job.id)
    assert last_restore_job(fakes).restore_id == job.id
    assert actions(fakes)[-1] == ("restore.request", "accepted")
    # And no backup can start meanwhile
    with pytest.raises(OperationInProgress):
        backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())


def test_a_restore_needs_the_clinics_name_typed_exactly(fakes: Fakes) -> None:
    done = completed_backup(fakes)

    with pytest.raises(ValidationFailed):
        restore.request_restore(fakes.svc, ADMIN, str(done.id), RestoreRequest(confirm="clinica"))
    assert fakes.records.tables(CLINIC).lock is None
    assert actions(fakes)[-1] == ("restore.request", "rejected")


def test_staff_may_not_restore_and_another_clinics_backup_is_not_found(fakes: Fakes) -> None:
    theirs = completed_backup(fakes, schema=OTHER_CLINIC)
    ours = completed_backup(fakes)

    with pytest.raises(Forbidden):
        restore.request_restore(fakes.svc, STAFF, str(ours.id), CONFIRM)
    with pytest.raises(BackupNotFound):
        restore.request_restore(fakes.svc, ADMIN, str(theirs.id), CONFIRM)
    assert fakes.records.tables(CLINIC).restores == {}


def test_a_restore_of_a_backup_not_completed_or_whose_file_is_gone_is_refused(
    fakes: Fakes,
) -> None:
    gone = completed_backup(fakes)
    del fakes.storage.objects[gone.storage_key]
    with pytest.raises(BackupFileMissing):
        restore.request_restore(fakes.svc, ADMIN, str(gone.id), CONFIRM)

    pending = backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())
    with pytest.raises(BackupNotCompleted):
        restore.request_restore(fakes.svc, ADMIN, str(pending.id), CONFIRM)


# --- the restore job ------------------------------------------------------------------------------


def test_a_restore_backs_the_clinic_up_first_then_loads_the_archive_and_commits(
    fakes: Fakes,
) -> None:
    _, finished = restored(fakes)

    # The job completed and freed the clinic
    assert finished.status == RestoreStatus.COMPLETED and finished.step == "done"
    assert fakes.records.tables(CLINIC).lock is None
    # The swap loaded the plaintext archive, and kept the clinic's previous data
    assert fakes.restorer.loaded.startswith(ARCHIVE_HEAD)
    (plan,) = fakes.restorer.swapped
    assert finished.old_schema == plan.old_schema
    # A pre-restore backup was made under the restore's lock, at the swap's snapshot
    assert finished.pre_restore_backup_id is not None
    pre = fakes.records.get(CLINIC, finished.pre_restore_backup_id)
    assert pre is not None and pre.trigger == Trigger.PRE_RESTORE
    assert pre.status == BackupStatus.COMPLETED and pre.encryption == "age"
    assert fakes.dumper.snapshot == "00000003-0000001B-1"
    # Audited in the swap's transaction, and the undo is open
    assert ("restore.run", "completed") in actions(fakes)
    assert restore.get_restore(fakes.svc, STAFF, str(finished.id)) == (finished, True)
    assert fakes.metrics.total("RestoreSucceeded") == 1


def test_a_repeated_delivery_of_a_restore_job_does_nothing(fakes: Fakes) -> None:
    restored(fakes)

    assert restore.run_restore_job(fakes.svc, last_restore_job(fakes)) is None
    assert len(fakes.restorer.swapped) == 1


def test_a_damaged_stored_backup_is_never_restored(fakes: Fakes) -> None:
    # Given a backup whose stored bytes changed after it completed
    done = completed_backup(fakes)
    stored = bytearray(fakes.storage.objects[done.storage_key])
    stored[-1] ^= 0xFF
    fakes.storage.objects[done.storage_key] = bytes(stored)
    restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)

    # When the job runs
    failed = restore.run_restore_job(fakes.svc, last_restore_job(fakes))

    # Then it fails before any lock or swap, nothing changed, and the clinic is free
    assert failed is not None and failed.status == RestoreStatus.FAILED
    assert failed.error_code == "checksum_mismatch"
    assert "nothing changed" in (failed.error or "")
    assert fakes.restorer.swapped == [] and fakes.dumper.snapshot is None
    assert fakes.records.tables(CLINIC).lock is None
    assert actions(fakes)[-1] == ("restore.run", "failed")


def test_objects_outside_the_clinic_that_depend_on_it_refuse_the_restore(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.restorer.dependents = [("public", "view informes"), (OTHER_CLINIC, "view x")]
    restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)

    failed = restore.run_restore_job(fakes.svc, last_restore_job(fakes))

    assert failed is not None and failed.status == RestoreStatus.FAILED
    # A shared schema's object is named; another clinic's is only counted
    assert "view informes" in (failed.error or "") and "view x" not in (failed.error or "")
    assert "1 in other clinics' schemas" in (failed.error or "")
    assert fakes.restorer.swapped == []


def test_a_restore_of_a_clinic_no_longer_active_fails_without_touching_it(fakes: Fakes) -> None:
    from clinic_backups.domain.models import Clinic

    done = completed_backup(fakes)
    restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)
    fakes.tenants.clinics[CLINIC] = Clinic(CLINIC, "Norte", active=False)

    assert restore.run_restore_job(fakes.svc, last_restore_job(fakes)) is None

    (job,) = fakes.records.tables(CLINIC).restores.values()
    assert job.status == RestoreStatus.FAILED and fakes.restorer.swapped == []


# --- undo ------------------------------------------------------------------------------------------


def test_an_undo_within_its_window_brings_the_previous_data_back(fakes: Fakes) -> None:
    _, finished = restored(fakes)

    requested = restore.request_undo(fakes.svc, ADMIN, str(finished.id))
    assert requested.undo_status == "pending"
    undone = restore.run_undo_job(fakes.svc, last_restore_job(fakes))

    assert undone is not None and undone.status == RestoreStatus.UNDONE
    (plan,) = fakes.restorer.swapped_back
    assert plan.old_schema == finished.old_schema
    assert fakes.records.tables(CLINIC).lock is None
    with pytest.raises(UndoNotAvailable, match="already undone"):
        restore.request_undo(fakes.svc, ADMIN, str(finished.id))


def test_an_undo_after_its_window_or_of_a_verification_is_not_available(fakes: Fakes) -> None:
    _, finished = restored(fakes)
    verification = restore.request_verify(fakes.svc, ADMIN, str(finished.backup_id))

    with pytest.raises(UndoNotAvailable, match="verification"):
        restore.request_undo(fakes.svc, ADMIN, str(verification.id))
    fakes.clock.advance(days=fakes.svc.config.policy.restore_undo_days, seconds=1)
    with pytest.raises(UndoNotAvailable, match="window"):
        restore.request_undo(fakes.svc, ADMIN, str(finished.id))
    assert restore.list_restores(fakes.svc, ADMIN, ListRestoresQuery()).undoable is None


def test_staff_may_not_undo(fakes: Fakes) -> None:
    _, finished = restored(fakes)

    with pytest.raises(Forbidden):
        restore.request_undo(fakes.svc, STAFF, str(finished.id))


# --- verifications -----------------------------------------------------------------------------------


def test_a_full_verification_that_passes_is_stored_on_the_backup_and_its_manifest(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)

    job = restore.request_verify(fakes.svc, ADMIN, str(done.id))
    assert fakes.records.tables(CLINIC).lock is None  # a drill takes no lock
    finished = restore.run_verify_job(fakes.svc, last_restore_job(fakes))

    assert finished is not None and finished.status == RestoreStatus.COMPLETED
    assert finished.id == job.id and finished.details["outcome"] == "passed"
    verified = fakes.records.get(CLINIC, done.id)
    assert verified is not None and verified.verify_outcome == "passed"
    manifest = fakes.storage.objects[manifest_key(done.storage_key)]
    assert b'"verify_outcome": "passed"' in manifest


def test_a_verification_whose_counts_differ_fails_the_backups_outcome(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.verifier.counts = {**TABLE_COUNTS, "citas": 6}
    restore.request_verify(fakes.svc, ADMIN, str(done.id))

    finished = restore.run_verify_job(fakes.svc, last_restore_job(fakes))

    assert finished is not None and finished.status == RestoreStatus.FAILED
    assert finished.error_code == "verification_failed"
    assert fakes.records.get(CLINIC, done.id).verify_outcome == "failed"  # type: ignore[union-attr]


def test_a_verification_without_a_verification_server_is_refused_at_once(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    fakes.reconfigure(verifier=None, verify_refused="no verification database configured")

    with pytest.raises(Exception, match="verification") as refused:
        restore.request_verify(fakes.svc, ADMIN, str(done.id))
    assert getattr(refused.value, "code", None) == "verification_unavailable"
    assert fakes.records.tables(CLINIC).restores == {}


def test_the_light_check_counts_the_rows_once_and_keeps_the_manifest_in_step(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    (light,) = [j for j in fakes.dispatcher.jobs if isinstance(j, LightVerifyJob)]

    checked = restore.run_job(fakes.svc, light)

    assert checked is not None and checked.check_outcome == "passed"
    assert checked.table_counts == TABLE_COUNTS
    manifest = fakes.storage.objects[manifest_key(done.storage_key)]
    assert b'"check_outcome": "passed"' in manifest
    assert restore.run_light_verify(fakes.svc, light) is None  # already checked


def test_a_backup_job_on_the_restore_queue_is_refused(fakes: Fakes) -> None:
    backups.create_backup(fakes.svc, ADMIN, CreateBackupRequest())

    with pytest.raises(ValueError, match="backup job"):
        restore.run_job(fakes.svc, last_backup_job(fakes))


def test_the_weekly_drill_is_queued_in_the_clinics_own_hour_only(fakes: Fakes) -> None:
    fakes.reconfigure(verify_weekly=True)
    newest = completed_backup(fakes)
    hour = zlib.crc32(CLINIC.encode()) % restore.HOURS_PER_WEEK
    monday = datetime(2026, 3, 9, tzinfo=UTC)  # a Monday
    turn = monday + timedelta(hours=hour)

    assert restore.schedule_verifications(fakes.svc, [CLINIC], turn + timedelta(hours=1)) == (
        0,
        {},
    )
    assert restore.schedule_verifications(fakes.svc, [CLINIC], turn) == (1, {})
    (job,) = fakes.records.tables(CLINIC).restores.values()
    assert job.backup_id == newest.id and job.kind.value == "verify"


def test_a_drill_that_counts_other_rows_than_the_light_check_fails_the_backup(
    fakes: Fakes,
) -> None:
    # Given a backup whose light check counted fewer rows than the drill will restore
    done = completed_backup(fakes)
    fakes.records.put(CLINIC, replace(done, table_counts={**TABLE_COUNTS, "citas": 5}))
    restore.request_verify(fakes.svc, ADMIN, str(done.id))

    # When the full drill runs (its own counts all match the archive)
    finished = restore.run_verify_job(fakes.svc, last_restore_job(fakes))

    # Then the difference fails the verification
    assert finished is not None and finished.status == RestoreStatus.FAILED
    assert finished.details["light_check_counts_differ"] is True
    assert fakes.records.get(CLINIC, done.id).verify_outcome == "failed"  # type: ignore[union-attr]


# --- the sweeper's restore steps ------------------------------------------------------------------


def test_the_sweep_fails_a_restore_whose_job_never_started_and_frees_the_clinic(
    fakes: Fakes,
) -> None:
    done = completed_backup(fakes)
    job = restore.request_restore(fakes.svc, ADMIN, str(done.id), CONFIRM)
    fakes.clock.advance(seconds=fakes.svc.config.policy.stuck_after.total_seconds() + 1)

    report = sweeper.sweep(fakes.svc, orphans=False)

    failed = fakes.restores.get(CLINIC, job.id)
    assert failed is not None and failed.status == RestoreStatus.FAILED
    assert (failed.error_code, report.restores_failed) == ("stale", 1)
    assert fakes.records.tables(CLINIC).lock is None
    assert actions(fakes)[-1] == ("restore.run", "failed")


def test_the_sweep_fails_a_drill_whose_lease_expired_but_never_a_live_one(fakes: Fakes) -> None:
    # Given a running drill (claimed with its own lease)
    done = completed_backup(fakes)
    job = restore.request_verify(fakes.svc, ADMIN, str(done.id))
    lease = backups.new_lease(fakes.svc)
    assert fakes.restores.claim(CLINIC, job.id, "verifying", fakes.clock.now(), lease)

    # While it renews its lease, however long it runs, it is left alone
    for _ in range(3):
        fakes.clock.advance(seconds=lease.seconds - 1)
        assert fakes.restores.renew_lease(CLINIC, lease) is True
        assert sweeper.sweep(fakes.svc, orphans=False).restores_failed == 0

    # Once it stops renewing past its lease, it is failed
    fakes.clock.advance(seconds=lease.seconds + 1)
    assert sweeper.sweep(fakes.svc, orphans=False).restores_failed == 1
    assert fakes.restores.get(CLINIC, job.id).status == RestoreStatus.FAILED  # type: ignore[union-attr]


def test_a_kept_schema_is_dropped_once_its_undo_window_is_over(fakes: Fakes) -> None:
    _, finished = restored(fakes)
    assert finished.old_schema in fakes.restorer.kept_schemas

    inside = sweeper.sweep(fakes.svc, orphans=False)
    fakes.clock.advance(days=fakes.svc.config.policy.restore_undo_days, seconds=1)
    after = sweeper.sweep(fakes.svc, orphans=False)

    assert (inside.schemas_dropped, after.schemas_dropped) == (0, 1)
    assert finished.old_schema not in fakes.restorer.kept_schemas
    assert fakes.restores.get(CLINIC, finished.id).dropped_at is not None  # type: ignore[union-attr]
    assert actions(fakes)[-1] == ("restore.drop", "dropped")


def test_a_kept_schema_named_like_a_clinic_is_never_dropped(fakes: Fakes) -> None:
    # Given a restore record whose kept schema name was changed to another clinic's
    _, finished = restored(fakes)
    fakes.restores.update(CLINIC, finished.id, old_schema=OTHER_CLINIC)
    fakes.restorer.kept_schemas.add(OTHER_CLINIC)
    fakes.clock.advance(days=fakes.svc.config.policy.restore_undo_days, seconds=1)

    report = sweeper.sweep(fakes.svc, orphans=False)

    assert report.schemas_dropped == 0
    assert OTHER_CLINIC in fakes.restorer.kept_schemas

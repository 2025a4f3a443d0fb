"""The hourly scheduler (usecases/scheduler.py) and the sweeper (usecases/sweeper.py) against
the fakes: which slots are due, busy or missed, and what the sweep fails, aborts, purges and
reports."""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from clinic_backups.domain.errors import QueueUnavailable
from clinic_backups.domain.models import (
    BackupJob,
    BackupStatus,
    Clinic,
    CreateBackupRequest,
    Role,
    SlotStatus,
    Trigger,
)
from clinic_backups.domain.names import audit_export_prefix
from clinic_backups.domain.ports import PendingUpload
from clinic_backups.domain.schedule import CLAIM_TIMEOUT, Slot
from clinic_backups.usecases import backups, scheduler, sweeper

from tests.fakes import CLINIC, OTHER_CLINIC, Fakes, caller, fake_services
from tests.usecases.conftest import completed_backup, last_backup_job

ADMIN = caller(Role.ADMIN)
# The platform's default schedule: every day at 03:00 Europe/Madrid (02:00 UTC in March).
SLOT_UTC = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
SLOT = (date(2026, 3, 11), 3)


def scheduled_jobs(fakes: Fakes) -> list[BackupJob]:
    return [
        j for j in fakes.dispatcher.jobs if isinstance(j, BackupJob) and j.trigger == "scheduled"
    ]


@pytest.fixture
def one_clinic(fakes: Fakes) -> Fakes:
    del fakes.tenants.clinics[OTHER_CLINIC]
    return fakes


def test_a_due_slot_gets_one_scheduled_backup_however_often_the_scheduler_runs(
    one_clinic: Fakes,
) -> None:
    fakes = one_clinic
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)

    first = scheduler.run_scheduler(fakes.svc, orphans=False)
    fakes.clock.advance(minutes=20)
    second = scheduler.run_scheduler(fakes.svc, orphans=False)

    assert (first.enqueued, second.enqueued) == (1, 0)
    (job,) = scheduled_jobs(fakes)
    assert job.schema_name == CLINIC
    assert fakes.schedules.slots[CLINIC][SLOT].status == SlotStatus.ENQUEUED
    record = fakes.records.get(CLINIC, job.backup_id)
    assert record is not None and record.trigger == Trigger.SCHEDULED
    assert record.created_by == scheduler.SCHEDULER_ACTOR


def test_nothing_is_due_before_the_clinics_hour(one_clinic: Fakes) -> None:
    fakes = one_clinic
    fakes.clock.at = SLOT_UTC - timedelta(minutes=1)

    report = scheduler.run_scheduler(fakes.svc, orphans=False)

    assert report.enqueued == 0 and scheduled_jobs(fakes) == []
    assert SLOT not in fakes.schedules.slots.get(CLINIC, {})


def test_a_disabled_schedule_makes_no_backup(one_clinic: Fakes) -> None:
    fakes = one_clinic
    fakes.schedules.save_settings(CLINIC, replace(fakes.svc.config.policy.defaults, enabled=False))
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)

    report = scheduler.run_scheduler(fakes.svc, orphans=False)

    assert (report.enqueued, report.disabled) == (0, 1)


def test_a_busy_clinic_is_retried_within_the_catch_up_window(one_clinic: Fakes) -> None:
    # Given a manual backup running at the clinic's hour
    fakes = one_clinic
    fakes.clock.at = SLOT_UTC - timedelta(minutes=5)
    manual = backups.create_backup(fakes.svc, ADMIN, backup_request())
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)

    # When the scheduler runs, the slot is skipped as busy
    busy = scheduler.run_scheduler(fakes.svc, orphans=False)
    assert (busy.enqueued, busy.skipped_busy) == (0, 1)
    assert fakes.schedules.slots[CLINIC][SLOT].status == SlotStatus.SKIPPED_BUSY

    # And once the manual backup is done, the next run makes the scheduled one
    backups.run_backup_job(fakes.svc, last_backup_job(fakes))
    assert fakes.records.get(CLINIC, manual.id).status == BackupStatus.COMPLETED  # type: ignore[union-attr]
    fakes.clock.advance(hours=1)
    retried = scheduler.run_scheduler(fakes.svc, orphans=False)
    assert retried.enqueued == 1
    assert fakes.schedules.slots[CLINIC][SLOT].attempts == 2


def test_a_slot_past_the_catch_up_window_is_recorded_missed_not_run(one_clinic: Fakes) -> None:
    # Given a clinic whose slot of yesterday ran, and today's slot the scheduler never saw
    fakes = one_clinic
    fakes.clock.at = SLOT_UTC - timedelta(days=1) + timedelta(minutes=5)
    scheduler.run_scheduler(fakes.svc, orphans=False)
    fakes.clock.at = SLOT_UTC + fakes.svc.config.policy.catch_up + timedelta(minutes=30)

    # When the scheduler runs again, too late for today's slot
    report = scheduler.run_scheduler(fakes.svc, orphans=False)

    # Then that slot is missed (not run late), and yesterday's stays enqueued
    assert report.missed == 1 and report.enqueued == 0
    assert fakes.schedules.slots[CLINIC][SLOT].status == SlotStatus.MISSED
    assert len(scheduled_jobs(fakes)) == 1


def test_a_job_the_queue_refuses_releases_its_slot_for_the_next_run(one_clinic: Fakes) -> None:
    fakes = one_clinic
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)
    fakes.dispatcher.refuse = QueueUnavailable()
    refused = scheduler.run_scheduler(fakes.svc, orphans=False)
    assert refused.enqueued == 0
    assert SLOT not in fakes.schedules.slots.get(CLINIC, {})
    assert fakes.records.tables(CLINIC).lock is None

    fakes.dispatcher.refuse = None
    fakes.clock.advance(minutes=30)
    assert scheduler.run_scheduler(fakes.svc, orphans=False).enqueued == 1


def test_unsupported_clinic_names_are_reported_failing_not_skipped_silently(
    fakes: Fakes,
) -> None:
    fakes.tenants.unsupported = ["Clínica Ñ"]

    report = scheduler.run_scheduler(fakes.svc, orphans=False)

    assert report.unsupported == 1
    assert report.sweep.failed_clinics == {"Clínica Ñ": "unsupported_name"}
    assert "Clínica Ñ" in report.stale_clinics


def backup_request() -> CreateBackupRequest:
    return CreateBackupRequest(note=None)


# --- the sweeper -------------------------------------------------------------------------------


def test_sweep_fails_a_pending_backup_whose_job_never_started(fakes: Fakes) -> None:
    # Given a backup still pending long after its message would have expired
    record = backups.create_backup(fakes.svc, ADMIN, backup_request())
    fakes.clock.advance(seconds=fakes.svc.config.policy.stuck_after.total_seconds() + 1)

    report = sweeper.sweep(fakes.svc, orphans=False)

    failed = fakes.records.get(CLINIC, record.id)
    assert failed is not None and failed.status == BackupStatus.FAILED
    assert failed.error_code == "stale" and report.stale_failed == 1
    assert fakes.records.tables(CLINIC).lock is None


def test_sweep_leaves_a_young_pending_backup_alone(fakes: Fakes) -> None:
    record = backups.create_backup(fakes.svc, ADMIN, backup_request())
    fakes.clock.advance(seconds=fakes.svc.config.policy.stuck_after.total_seconds() - 60)

    assert sweeper.sweep(fakes.svc, orphans=False).stale_failed == 0
    assert fakes.records.get(CLINIC, record.id).status == BackupStatus.PENDING  # type: ignore[union-attr]


def test_sweep_aborts_dead_uploads_but_not_one_a_live_job_writes(fakes: Fakes) -> None:
    # Given an upload left by a failed backup, and the upload of a backup now pending
    done = completed_backup(fakes)
    live = backups.create_backup(fakes.svc, ADMIN, backup_request())
    at = fakes.clock.now()
    dead = PendingUpload(done.storage_key.replace(".dump", "-x.dump"), "u1", at)
    fakes.storage.uploads = [dead, PendingUpload(live.storage_key, "u2", at)]

    report = sweeper.sweep(fakes.svc, orphans=False)

    assert (report.uploads_aborted, report.uploads_in_flight) == (1, 1)
    assert [u.upload_id for u in fakes.storage.uploads] == ["u2"]


def test_sweep_reports_old_objects_without_a_record_as_orphans(fakes: Fakes) -> None:
    done = completed_backup(fakes)
    stray = f"{CLINIC}/2026/03/stray.dump.age"
    fakes.storage.put_bytes(stray, b"x", "application/octet-stream")
    fakes.storage.put_bytes(f"{OTHER_CLINIC}/2026/03/theirs.dump.age", b"x", "x")

    young = sweeper.sweep(fakes.svc, [CLINIC])
    fakes.clock.advance(hours=2)
    old = sweeper.sweep(fakes.svc, [CLINIC])

    assert young.orphans == {}  # it may belong to a record being written
    assert old.orphans == {CLINIC: [stray]}
    assert done.storage_key in fakes.storage.objects  # reported, never removed


def test_sweep_removes_activity_exports_past_their_lifetime(fakes: Fakes) -> None:
    prefix = audit_export_prefix(CLINIC)
    fakes.storage.put_bytes(prefix + "old.csv.age", b"x", "text/csv")
    fakes.clock.advance(hours=23)
    fakes.storage.put_bytes(prefix + "new.csv.age", b"x", "text/csv")
    fakes.clock.advance(hours=2)

    report = sweeper.sweep(fakes.svc, [CLINIC], orphans=False)

    assert report.exports_removed == 1
    assert sorted(fakes.storage.objects) == [prefix + "new.csv.age"]


def test_a_clinic_failing_in_the_sweep_does_not_stop_the_others(fakes: Fakes) -> None:
    # Given one clinic whose deleted backup is past its grace period, and a store that fails
    # for the other clinic only
    for schema in (CLINIC, OTHER_CLINIC):
        done = completed_backup(fakes, schema=schema)
        backups.delete_backup(fakes.svc, caller(Role.ADMIN, schema=schema), str(done.id))
    fakes.clock.advance(days=fakes.svc.config.delete_grace_days + 1)
    real_delete = fakes.storage.delete

    def failing_for_other(keys: list[str]) -> None:
        if any(k.startswith(OTHER_CLINIC) for k in keys):
            raise RuntimeError("store refused")
        real_delete(keys)

    fakes.storage.delete = failing_for_other  # type: ignore[method-assign]

    # When the sweep runs
    report = sweeper.sweep(fakes.svc, orphans=False)

    # Then the first clinic is purged, the other listed as failing
    assert report.purged == 1
    assert report.failed_clinics == {OTHER_CLINIC: "purge"}
    assert not any(k.startswith(f"{CLINIC}/") for k in fakes.storage.objects)


def test_the_orphan_report_takes_each_clinic_in_its_own_hour(one_clinic: Fakes) -> None:
    fakes = one_clinic
    fakes.storage.put_bytes(f"{CLINIC}/2026/01/stray.dump.age", b"x", "x")
    turn = zlib.crc32(CLINIC.encode()) % scheduler.ORPHAN_ROTATION_HOURS
    fakes.clock.at = datetime(2026, 3, 12, turn, 30, tzinfo=UTC)

    in_turn = scheduler.run_scheduler(fakes.svc)
    fakes.clock.advance(hours=1)
    out_of_turn = scheduler.run_scheduler(fakes.svc)

    assert in_turn.sweep.orphans == {CLINIC: [f"{CLINIC}/2026/01/stray.dump.age"]}
    assert out_of_turn.sweep.orphans == {}


def test_an_inactive_clinic_is_neither_scheduled_nor_swept(fakes: Fakes) -> None:
    fakes.tenants.clinics[OTHER_CLINIC] = Clinic(OTHER_CLINIC, "Sur", active=False)
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)

    scheduler.run_scheduler(fakes.svc, orphans=False)

    assert [j.schema_name for j in scheduled_jobs(fakes)] == [CLINIC]
    assert OTHER_CLINIC not in fakes.records.clinics


# --- a run that died halfway (Action.RECOVER) ------------------------------------------------------


def claimed_by_a_run_that_died(fakes: Fakes, *, with_record: bool) -> uuid.UUID:
    """The slot claimed (`due`) by a run that died before sending its job (and, without
    `with_record`, before creating the backup's record)."""
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)
    backup_id = uuid.uuid4()
    fakes.records.ensure_schema(CLINIC)
    assert fakes.schedules.claim_slot(CLINIC, Slot(SLOT_UTC, *SLOT), backup_id, fakes.clock.now())
    if with_record:
        backups.prepare_backup(
            fakes.svc,
            CLINIC,
            trigger=Trigger.SCHEDULED,
            actor_id=scheduler.SCHEDULER_ACTOR,
            actor_name=None,
            backup_id=backup_id,
        )
    return backup_id


def test_a_pending_backup_left_by_a_dead_run_has_its_job_sent_by_the_next(
    one_clinic: Fakes,
) -> None:
    fakes = one_clinic
    backup_id = claimed_by_a_run_that_died(fakes, with_record=True)
    fakes.clock.advance(seconds=CLAIM_TIMEOUT.total_seconds() + 60)

    scheduler.run_scheduler(fakes.svc, orphans=False)

    assert [j.backup_id for j in scheduled_jobs(fakes)] == [backup_id]
    assert fakes.schedules.slots[CLINIC][SLOT].status == SlotStatus.ENQUEUED


def test_a_slot_a_dead_run_claimed_is_retried_in_the_window_and_missed_after_it(
    one_clinic: Fakes,
) -> None:
    # Within the catch-up window: a new backup for the slot
    fakes = one_clinic
    claimed_by_a_run_that_died(fakes, with_record=False)
    fakes.clock.advance(seconds=CLAIM_TIMEOUT.total_seconds() + 60)
    assert scheduler.run_scheduler(fakes.svc, orphans=False).enqueued == 1

    # Past it (another clinic state, same story): the slot is missed, nothing runs late
    late = fake_services()
    del late.tenants.clinics[OTHER_CLINIC]
    claimed_by_a_run_that_died(late, with_record=False)
    late.clock.at = SLOT_UTC + late.svc.config.policy.catch_up + timedelta(minutes=1)
    report = scheduler.run_scheduler(late.svc, orphans=False)
    assert (report.enqueued, report.missed) == (0, 1)
    assert late.schedules.slots[CLINIC][SLOT].status == SlotStatus.MISSED


def test_a_run_out_of_time_claims_nothing_more_is_alarmed_and_the_next_run_takes_the_rest(
    fakes: Fakes,
) -> None:
    fakes.clock.at = SLOT_UTC + timedelta(minutes=10)

    late = scheduler.run_scheduler(fakes.svc, deadline=time.monotonic() - 1, orphans=False)

    assert late.out_of_time and late.enqueued == 0
    assert fakes.schedules.slots.get(CLINIC, {}) == {}
    assert fakes.metrics.total("SchedulerOutOfTime") == 1
    fakes.clock.advance(minutes=60)
    report = scheduler.run_scheduler(fakes.svc, orphans=False)
    assert not report.out_of_time and report.enqueued == 2
    assert {j.schema_name for j in scheduled_jobs(fakes)} == {CLINIC, OTHER_CLINIC}
    assert fakes.metrics.total("SchedulerOutOfTime") == 1

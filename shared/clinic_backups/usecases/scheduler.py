"""One scheduler run (hourly, EventBridge → functions/scheduler): decide every active clinic's
due slots, enqueue their backups on the job queue, then sweep.

1. One read of the fleet: the clinics' migration state (`ensure_schemas`) and a snapshot of
   each clinic's settings, recent slots and sweeper hints, a few hundred clinics per statement.
2. Stuck records are failed first (sweeper), so a dead backup's lock does not make its clinic
   look busy to this run.
3. Slots (`schedule.decide`): a new slot within the catch-up window is claimed in the database
   (INSERT … ON CONFLICT DO NOTHING: a duplicated or concurrent event claims nothing) and its
   backup's record created (trigger `scheduled`, actor `scheduler`; it takes the clinic's
   operation lock). The jobs go on the queue ten at a time (SQS SendMessageBatch), whose
   `MaximumConcurrency` bounds how many clinics hit the database at once; only then is a slot
   `enqueued`. A job the queue still refuses after retries fails its record (freeing the lock),
   releases its slot for a later run and is a failing clinic (step `enqueue`). A busy clinic's
   slot becomes `skipped_busy` and is retried by later runs within the window; beyond it,
   `missed`.
4. The rest of the sweeper (unfinished uploads, purge, and — for 1/24 of the clinics each hour,
   so every clinic daily — expired activity-log exports and the orphan report) while time
   remains.
   Restores' housekeeping runs with the stuck step: stale restore jobs fail (releasing their
   lock before the slots are decided) and kept schemas past their undo window are dropped.
   When `VERIFY_WEEKLY` is on, each clinic's newest completed backup gets a full verification
   drill once a week (the clinics spread over the week's hours).
5. Metrics: `ClinicsWithoutRecentBackup` (enabled clinics whose newest completed backup is
   older than their schedule's period + catch-up + 1 h) and `OldestLastGoodBackupHours` feed
   the stale-backup alarm, plus the counts of this run.

Every step is idempotent and one clinic's failure never stops the others: a batch of the
fleet read that fails is split down to the clinic that fails it, every per-clinic step is
guarded, and each failing clinic is logged, listed (`failed_clinics`), counted in the run's
summary (`clinics_failed`) and in the `ClinicsFailed` metric (ClinicFailuresAlarm). A partial
run (a timeout, a database hiccup) is finished by the next one within the catch-up window.
"""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from clinic_backups.domain.errors import ApiError, OperationInProgress
from clinic_backups.domain.models import (
    BackupJob,
    BackupStatus,
    ClinicSettings,
    SlotStatus,
    Trigger,
)
from clinic_backups.domain.names import UNSUPPORTED_NAME
from clinic_backups.domain.ports import ClinicSnapshot, EnqueueFailure, SnapshotWindow
from clinic_backups.domain.schedule import (
    CLAIM_TIMEOUT,
    MISSED_LOOKBACK,
    Action,
    Slot,
    decide,
    is_stale,
)
from clinic_backups.observability import logger
from clinic_backups.usecases.backups import (
    backup_queued,
    enqueue_batch,
    job_not_queued,
    prepare_backup,
)
from clinic_backups.usecases.context import Services, audit_by
from clinic_backups.usecases.restore import schedule_verifications
from clinic_backups.usecases.sweeper import (
    FAILED_CLINICS_LISTED,
    SweepReport,
    abort_stale_uploads,
    clinic_failed,
    emit_metrics,
    expire_exports,
    fail_stuck,
    find_orphans,
    guarded,
    purge,
    sweep_restores,
    unprepared,
)

SCHEDULER_ACTOR = "scheduler"
# Orphan reports are spread over the day: a clinic is listed when crc32(schema) % 24 is the
# current UTC hour.
ORPHAN_ROTATION_HOURS = 24
STALE_CLINICS_LOGGED = 50
# Jobs are sent when this many are ready (SendMessageBatch's limit): a run that dies leaves at
# most this many records without their message, and a later run sends them again (RECOVER).
ENQUEUE_BATCH = 10


@dataclass
class _Outgoing:
    """A scheduled backup whose record exists and whose job is not sent yet."""

    schema: str
    slot: Slot
    job: BackupJob
    recovered: bool = False


@dataclass
class SchedulerReport:
    clinics: int = 0
    unavailable: int = 0
    unsupported: int = 0
    excluded: int = 0
    enqueued: int = 0
    skipped_busy: int = 0
    missed: int = 0
    already_claimed: int = 0
    recovered: int = 0
    errors: int = 0
    disabled: int = 0
    verifications_queued: int = 0
    stale_clinics: list[str] = field(default_factory=list)
    oldest_last_good_hours: float = 0.0
    out_of_time: bool = False
    seconds: float = 0.0
    sweep: SweepReport = field(default_factory=SweepReport)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sweep"] = self.sweep.to_dict()
        data["stale_clinics"] = len(self.stale_clinics)
        # The run's failing clinics (the sweep's ledger holds every step's): counted, named.
        failed = self.sweep.failed_clinics
        data["clinics_failed"] = len(failed)
        data["failed_clinics"] = dict(sorted(failed.items())[:FAILED_CLINICS_LISTED])
        return data


def run_scheduler(
    svc: Services, *, deadline: float | None = None, orphans: bool = True
) -> SchedulerReport:
    """One run. `deadline` (a `time.monotonic()` value) stops the optional work in time:
    slots are decided first, the sweeper's uploads/purge/orphans only while time remains."""
    started = time.monotonic()
    run = _Run(svc, SchedulerReport(), svc.clock.now(), deadline)
    schemas = run.clinics()
    snapshots = run.snapshots(schemas)
    schemas = [s for s in schemas if s not in run.report.sweep.failed_clinics]
    run.fail_stuck_jobs(schemas, snapshots)
    run.schedule(schemas, snapshots)
    run.verifications(schemas)
    run.sweep(schemas, snapshots, orphans)
    run.report.seconds = round(time.monotonic() - started, 3)
    _emit(svc, run.report)
    return run.report


@dataclass
class _Run:
    """One scheduler run's steps, in the order `run_scheduler` takes them."""

    svc: Services
    report: SchedulerReport
    now: datetime
    deadline: float | None

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.report.out_of_time = True
        return self.report.out_of_time

    def clinics(self) -> list[str]:
        """The active clinics whose backup tables are ready (the others counted, reported)."""
        svc, report = self.svc, self.report
        clinics = [c.schema for c in svc.tenants.active_clinics()]
        # A tenant django-tenants accepts but the product cannot back up (names.py) is a failing
        # clinic of every run (summary, ClinicsFailed alarm) and a stale one: never silent.
        unsupported = svc.tenants.unsupported_clinics()
        for schema in unsupported:
            clinic_failed(report.sweep, schema, "unsupported_name", UNSUPPORTED_NAME)
        report.unsupported = len(unsupported)
        # EXCLUDED_SCHEMAS (the template of clone_schema): not clinics, but counted, not silent.
        report.excluded = len(getattr(svc.tenants, "excluded", ()))
        report.stale_clinics.extend(unsupported)
        check = svc.records.ensure_schemas(clinics)
        skipped = unprepared(report.sweep, check)
        schemas = [s for s in clinics if s not in skipped]
        report.clinics, report.unavailable = len(schemas), len(check.unavailable)
        if check.unavailable:
            logger.warning(
                "active clinics without a schema; skipped",
                extra={"count": len(check.unavailable), "clinics": sorted(check.unavailable)[:20]},
            )
        return schemas

    def snapshots(self, schemas: list[str]) -> dict[str, ClinicSnapshot]:
        """Every clinic's state in one read (a clinic whose read failed is a failing one)."""
        svc, now, policy = self.svc, self.now, self.svc.config.policy
        window = SnapshotWindow(
            slots_since=now - policy.catch_up - MISSED_LOOKBACK - timedelta(hours=1),
            stuck_before=now - policy.stuck_after,
            deleted_before=now - timedelta(days=svc.config.delete_grace_days),
            replica_lag_before=(
                now - timedelta(minutes=svc.config.replica_lag_minutes)
                if svc.replica is not None
                else None
            ),
        )
        snapshots = svc.schedules.snapshot(schemas, window)
        self.report.sweep.replica_lagging = sum(s.replica_lagging for s in snapshots.values())
        for schema, read in snapshots.items():
            if read.error is not None:
                clinic_failed(self.report.sweep, schema, "snapshot", read.error)
        return snapshots

    def fail_stuck_jobs(self, schemas: list[str], snapshots: dict[str, ClinicSnapshot]) -> None:
        svc, sweep = self.svc, self.report.sweep
        for schema in schemas:
            snap = snapshots.get(schema)
            if snap is not None and snap.stuck:
                guarded(sweep, "stuck", schema, partial(fail_stuck, svc, schema, sweep))
        guarded(sweep, "restores", None, partial(sweep_restores, svc, schemas, sweep))

    def schedule(self, schemas: list[str], snapshots: dict[str, ClinicSnapshot]) -> None:
        """Decide every clinic's slots and send their jobs, ten per batch."""
        svc, report, now, policy = self.svc, self.report, self.now, self.svc.config.policy
        oldest = timedelta(0)
        outbox: list[_Outgoing] = []
        for schema in schemas:
            if self.out_of_time():
                break
            snap = snapshots.get(schema)
            if snap is None:
                continue
            settings = snap.settings or policy.defaults
            if not settings.enabled:
                report.disabled += 1
                continue
            if is_stale(settings, snap.last_good_at, snap.first_slot_at, now, policy.catch_up):
                report.stale_clinics.append(schema)
            if snap.last_good_at is not None:
                oldest = max(oldest, now - snap.last_good_at)
            outbox += self._decide(schema, settings, snap)
            if len(outbox) >= ENQUEUE_BATCH:
                _send(svc, outbox, now, report)
        _send(svc, outbox, now, report)
        report.oldest_last_good_hours = round(oldest.total_seconds() / 3600, 2)

    def _decide(
        self, schema: str, settings: ClinicSettings, snap: ClinicSnapshot
    ) -> list[_Outgoing]:
        outgoing: list[_Outgoing] = []
        try:
            for decision in decide(settings, snap.slots, self.now, self.svc.config.policy.catch_up):
                sent = _execute(
                    self.svc,
                    schema,
                    decision.slot,
                    decision.action,
                    snap.slots,
                    self.now,
                    self.report,
                )
                if sent is not None:
                    outgoing.append(sent)
        except Exception:
            self.report.errors += 1
            logger.exception("scheduling a clinic failed", extra={"clinic": schema})
            clinic_failed(self.report.sweep, schema, "slots")
        return outgoing

    def verifications(self, schemas: list[str]) -> None:
        if self.out_of_time():
            return
        try:
            self.report.verifications_queued, failed = schedule_verifications(
                self.svc, schemas, self.now
            )
            for schema in failed:
                clinic_failed(self.report.sweep, schema, "verification")
        except Exception:
            self.report.errors += 1
            logger.exception("queueing the weekly verifications failed")

    def sweep(
        self, schemas: list[str], snapshots: dict[str, ClinicSnapshot], orphans: bool
    ) -> None:
        """The sweeper's optional steps, each only while time remains."""
        svc, sweep = self.svc, self.report.sweep
        if svc.storage is not None and not self.out_of_time():
            guarded(sweep, "uploads", None, partial(abort_stale_uploads, svc, set(schemas), sweep))
        for schema in schemas:
            snap = snapshots.get(schema)
            if snap is not None and snap.purgeable and not self.out_of_time():
                guarded(sweep, "purge", schema, partial(purge, svc, schema, sweep))
        if svc.storage is None:
            return
        # In the clinic's daily turn, one listing each: its expired activity-log exports (an
        # export lives at most AUDIT_EXPORT_TTL_HOURS + 24 h), then its orphaned objects.
        daily = [("exports", expire_exports), ("orphans", find_orphans)][: 2 if orphans else 1]
        for schema in schemas:
            if zlib.crc32(schema.encode()) % ORPHAN_ROTATION_HOURS != self.now.hour:
                continue
            for step, work in daily:
                if not self.out_of_time():
                    guarded(sweep, step, schema, partial(work, svc, schema, sweep))


def _execute(
    svc: Services,
    schema: str,
    slot: Slot,
    action: Action,
    rows: dict[Any, Any],
    now: datetime,
    report: SchedulerReport,
) -> _Outgoing | None:
    """Claim one slot and create its backup's record; return the job to send (or None)."""
    within = now < slot.scheduled_at + svc.config.policy.catch_up
    if action == Action.RECOVER:
        # A run claimed this slot and died. If its backup record exists and is no longer
        # pending, its job was queued and has run: nothing to redo. A pending one may have
        # died in that run's outbox: it is sent again (the worker's claim runs a job once).
        row = rows[slot.key]
        record = None if row.backup_id is None else svc.records.get(schema, row.backup_id)
        if record is not None and record.status == BackupStatus.PENDING:
            job = BackupJob(
                kind="backup", schema=schema, backup_id=record.id, trigger=Trigger.SCHEDULED
            )
            return _Outgoing(schema, slot, job, recovered=True)
        if record is not None:
            svc.schedules.mark_slot(schema, slot, SlotStatus.ENQUEUED, now, record.id)
            report.recovered += 1
            return None
        action = Action.RETRY if within else Action.MISS
    if action == Action.MISS:
        if svc.schedules.record_missed(schema, slot, now, now - CLAIM_TIMEOUT):
            report.missed += 1
            logger.warning(
                "scheduled backup missed: the catch-up window passed",
                extra={"clinic": schema, "slot": _slot_name(slot)},
            )
        return None

    backup_id = uuid.uuid4()
    if action == Action.RETRY:
        claimed = svc.schedules.reclaim_slot(schema, slot, backup_id, now, now - CLAIM_TIMEOUT)
    else:
        claimed = svc.schedules.claim_slot(schema, slot, backup_id, now)
    if not claimed:
        report.already_claimed += 1  # another run (a duplicated event) has this slot
        return None
    try:
        _, job = prepare_backup(
            svc,
            schema,
            trigger=Trigger.SCHEDULED,
            actor_id=SCHEDULER_ACTOR,
            actor_name=None,
            backup_id=backup_id,
        )
    except OperationInProgress:
        svc.schedules.mark_slot(schema, slot, SlotStatus.SKIPPED_BUSY, now, None)
        report.skipped_busy += 1
        logger.info(
            "clinic busy; slot retried later in the catch-up window",
            extra={"clinic": schema, "slot": _slot_name(slot)},
        )
        return None
    except ApiError as error:
        # The database refused: release the claim so a later run tries again.
        svc.schedules.release_slot(schema, slot, backup_id)
        report.errors += 1
        logger.warning(
            "could not start a scheduled backup", extra={"clinic": schema, "error_code": error.code}
        )
        return None
    return _Outgoing(schema, slot, job)


def _send(svc: Services, outbox: list[_Outgoing], now: datetime, report: SchedulerReport) -> None:
    """Send the outbox's jobs (one SendMessageBatch per 10), then settle each clinic: a queued
    job's slot becomes `enqueued`; a refused one fails its record and releases its slot."""
    if not outbox:
        return
    sending = list(outbox)
    outbox.clear()
    try:
        failures = enqueue_batch(svc, [o.job for o in sending])
    except Exception:
        logger.exception("sending a batch of jobs failed")
        failures = [EnqueueFailure(o.job, "internal_error") for o in sending]
    refused = {f.job: f for f in failures}
    for outgoing in sending:
        failure = refused.get(outgoing.job)
        guarded(
            report.sweep,
            "enqueue",
            outgoing.schema,
            partial(_settle, svc, outgoing, failure, now, report),
        )


def _settle(
    svc: Services,
    outgoing: _Outgoing,
    failure: EnqueueFailure | None,
    now: datetime,
    report: SchedulerReport,
) -> None:
    schema, slot, job = outgoing.schema, outgoing.slot, outgoing.job
    if failure is not None:
        # Not done: the record fails (its lock is freed) and the slot is released, so a later
        # run within the catch-up window claims it again.
        job_not_queued(svc, job)
        svc.schedules.release_slot(schema, slot, job.backup_id)
        report.errors += 1
        clinic_failed(
            report.sweep,
            schema,
            "enqueue",
            f"the job queue did not take the backup ({failure.code}) after retries",
        )
        return
    backup_queued(svc, job)
    svc.schedules.mark_slot(schema, slot, SlotStatus.ENQUEUED, now, job.backup_id)
    if outgoing.recovered:
        report.recovered += 1
        return
    report.enqueued += 1
    audit_by(
        svc,
        schema,
        SCHEDULER_ACTOR,
        "backup.create",
        "scheduled",
        backup_id=job.backup_id,
        slot=_slot_name(slot),
        scheduled_at=slot.scheduled_at.isoformat(),
    )


def _slot_name(slot: Slot) -> str:
    return f"{slot.local_date.isoformat()} {slot.local_hour:02d}:00"


def _emit(svc: Services, report: SchedulerReport) -> None:
    metrics = svc.metrics
    metrics.add("ClinicsScheduled", report.clinics, "Count")
    metrics.add("ScheduledBackupsEnqueued", report.enqueued, "Count")
    metrics.add("SlotsSkippedBusy", report.skipped_busy, "Count")
    metrics.add("SlotsMissed", report.missed, "Count")
    metrics.add("SchedulerErrors", report.errors, "Count")
    metrics.add("VerificationsQueued", report.verifications_queued, "Count")
    metrics.add("ClinicsWithoutRecentBackup", len(report.stale_clinics), "Count")
    metrics.add("ClinicsUnsupported", report.unsupported, "Count")
    metrics.add("OldestLastGoodBackupHours", report.oldest_last_good_hours, "None")
    metrics.add("SchedulerSeconds", report.seconds, "Seconds")
    # A run that reached its deadline left clinics undecided (the next hourly run takes them):
    # a fleet outgrowing one run is alarmed before backups slip by an hour every night.
    metrics.add("SchedulerOutOfTime", 1 if report.out_of_time else 0, "Count")
    emit_metrics(svc, report.sweep)
    if report.stale_clinics:
        logger.warning(
            "clinics without a recent good backup",
            extra={
                "count": len(report.stale_clinics),
                "clinics": report.stale_clinics[:STALE_CLINICS_LOGGED],
            },
        )
    logger.info("scheduler run done", extra=report.to_dict())

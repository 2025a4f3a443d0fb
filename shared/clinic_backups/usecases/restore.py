"""Restoring a clinic from one of its backups, undoing it, and proving backups restorable.

Requests (functions/restore_backup, the operator CLI):
- `request_restore` — `POST /backups/{id}/restore` `{"confirm": "<clinic schema>"}`: creates
  the restore job and takes the clinic's operation lock in one transaction (409
  `operation_in_progress` otherwise), then queues the job on the restore queue.
- `request_verify` — `POST /backups/{id}/verify`: a full drill (no lock: nothing live changes).
- `request_undo` — `POST /restores/{id}/undo`: the clinic's latest completed restore, within
  its undo window (`RESTORE_UNDO_DAYS`), else 409 `undo_not_available`.
- `list_restores`, `get_restore` — `GET /restores`, `GET /restores/{id}`.

Jobs (the restore queue; `run_job` dispatches by kind):
- restore: claim (taking the clinic's lease, renewed by a heartbeat) → pre-restore backup
  of the live schema (trigger `pre_restore`, the normal pipeline, created under the
  restore's lock) while, beside it, the whole stored object is read and checked (sha256,
  age, the archive's structure: `archive.verify_stored`) → pre-check (the swap's dry run,
  schema only) → the kept schema's name stored → the atomic swap (adapters/pgrestore.py),
  whose own transaction also completes the job, releases the lock and writes the audit
  entry, and only while the job still holds its lease. The phases share one deadline
  (`RESTORE_TIMEOUT_SECONDS`); past it the job ends as `restore_interrupted`;
- undo: the same swap, backwards; the restored schema is kept as the undo's schema;
- verify: the full drill in a scratch database of the verification server;
- verify_light: after every backup, no database: sha256 and rows per table of the archive.

Every backup is read through `archive.open_archive` (sha256 of the stored bytes, checked
before the end of the stream). Nothing here writes SQL or runs a process: the ports do.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from clinic_backups.domain.errors import (
    ApiError,
    ArchiveInvalid,
    BackupNotCompleted,
    BackupRunError,
    ChecksumMismatch,
    ClinicGone,
    DatabaseUnavailable,
    FieldProblem,
    MissingDependency,
    OutsideDependents,
    PreRestoreBackupFailed,
    RestoreFailed,
    RestoreInterrupted,
    RestoreNotFound,
    StorageUnavailable,
    ValidationFailed,
    VerificationFailed,
    VerificationNotConfigured,
    VerificationUnavailable,
)
from clinic_backups.domain.models import (
    AuditEntry,
    BackupJob,
    BackupRecord,
    BackupStatus,
    Job,
    Lease,
    LightVerifyJob,
    ListRestoresQuery,
    Permission,
    ReencryptJob,
    ReplicateJob,
    RestoreJob,
    RestoreKind,
    RestorePage,
    RestoreRecord,
    RestoreRequest,
    RestoreStatus,
    TenantContext,
    Trigger,
)
from clinic_backups.domain.names import check_key_in_prefix, kept_schema_name
from clinic_backups.domain.ports import Restorer, RestoresRepository, SwapPlan, UndoPlan
from clinic_backups.observability import logger
from clinic_backups.usecases import context
from clinic_backups.usecases.archive import open_archive, verify_stored
from clinic_backups.usecases.backups import (
    LeasedRun,
    leased_run,
    new_backup_record,
    new_lease,
    require_file,
    run_backup_job,
    start_heartbeat,
)
from clinic_backups.usecases.context import Services
from clinic_backups.usecases.lease import Heartbeat
from clinic_backups.usecases.manifests import update_manifest
from clinic_backups.usecases.reencrypt import run_reencrypt_job
from clinic_backups.usecases.replica import after_mismatch, run_replicate_job

SYSTEM = "system"
HOURS_PER_WEEK = 7 * 24
# Failures of a drill that say something about the backup (its outcome becomes `failed`);
# anything else (the verification server unreachable…) fails the job and leaves the outcome.
_ARCHIVE_FAULTS = (
    ChecksumMismatch,
    ArchiveInvalid,
    RestoreFailed,
    MissingDependency,
    VerificationFailed,
)


class Deadline:
    """A restore job's one deadline: its phases (pre-restore backup, verification, pre-check,
    swap) share it, each getting what is left (None: no overall limit, the operator CLI)."""

    def __init__(self, seconds: float | None):
        self._at = time.monotonic() + seconds if seconds else None

    @property
    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def check(self, before: str) -> None:
        if self.passed:
            raise RestoreInterrupted(
                f"the restore ran out of time before {before} (RESTORE_TIMEOUT_SECONDS); "
                "nothing changed (use the operator CLI for clinics this large)"
            )

    def restorer(self, restorer: Restorer) -> Restorer:
        if self._at is None:
            return restorer
        return restorer.limited(self._at - time.monotonic())

    def services(self, svc: Services) -> Services:
        """`svc` whose dumper stops at the deadline (the pre-restore backup)."""
        if self._at is None or svc.dumper is None:
            return svc
        return replace(svc, dumper=svc.dumper.limited(self._at - time.monotonic()))


class _StoredCheck(threading.Thread):
    """`archive.verify_stored` of the backup to restore (it reads the whole object and
    pg_restore parses every block), before anything is locked. A thread of its own so that
    pyrage's panics (BaseException) are caught and reported like any failure; the
    pre-restore backup now runs inside the swap, under its locks (issue 18)."""

    def __init__(self, svc: Services, schema: str, record: BackupRecord, restorer: Restorer):
        super().__init__(name="verify-stored", daemon=True)
        self._work = lambda: verify_stored(svc, schema, record, restorer.count_rows)
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._work()
        except BaseException as error:  # pyrage panics are BaseException (BRIEF)
            self.error = error
        finally:
            self.seconds = round(time.monotonic() - started, 3)

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _restorer(svc: Services) -> Restorer:
    assert svc.restores is not None and svc.restorer is not None, "no restore adapters here"
    return svc.restorer


def _restores(svc: Services) -> RestoresRepository:
    assert svc.restores is not None, "no restore repository here"
    return svc.restores


def _enqueue(svc: Services, job: Job) -> None:
    assert svc.dispatcher is not None, "this function cannot enqueue jobs"
    svc.dispatcher.enqueue(job)


# --- requests ---------------------------------------------------------------------------------


def request_restore(
    svc: Services, ctx: TenantContext, raw_id: str, request: RestoreRequest
) -> RestoreRecord:
    """`POST /backups/{id}/restore` (admins by default): 202 with the queued job."""
    backup_id = context.parse_id(raw_id)
    context.authorize(svc, ctx, Permission.RESTORE, "restore.request", backup_id)
    if request.confirm != ctx.schema:
        context.audit(svc, ctx, "restore.request", "rejected", backup_id, reason="confirmation")
        raise ValidationFailed(
            "Type the clinic's name exactly to confirm the restore.",
            details=[FieldProblem("confirm", "must be the clinic's schema name, typed exactly")],
        )
    record = context.visible(svc, ctx, backup_id)
    check_key_in_prefix(record.storage_key, ctx.schema)
    if record.status != BackupStatus.COMPLETED:
        context.audit(
            svc, ctx, "restore.request", "rejected", backup_id, status=record.status.value
        )
        raise BackupNotCompleted(
            f"The backup is {record.status.value}; only completed backups can be restored."
        )
    require_file(svc, ctx, record, "restore.request")
    job = RestoreRecord(
        id=uuid.uuid4(),
        kind=RestoreKind.RESTORE,
        status=RestoreStatus.PENDING,
        backup_id=backup_id,
        requested_by=ctx.user_id,
        requested_by_name=ctx.user_name,
        request_id=ctx.request_id,
        created_at=svc.clock.now(),
        step="queued",
    )
    try:
        created = _restores(svc).create(ctx.schema, job, take_lock=True)
    except ApiError as error:
        context.audit(svc, ctx, "restore.request", "rejected", backup_id, reason=error.code)
        raise
    try:
        _enqueue(svc, RestoreJob(kind="restore", schema=ctx.schema, restore_id=created.id))
    except ApiError:
        # Never leave a pending job (and the clinic's lock) behind a message that does not exist.
        _restores(svc).fail(
            ctx.schema, created.id, "internal_error", "the job could not be queued", svc.clock.now()
        )
        context.audit(svc, ctx, "restore.request", "rejected", backup_id, reason="queue")
        raise
    context.audit(svc, ctx, "restore.request", "accepted", backup_id, restore_id=str(created.id))
    logger.info("restore queued", extra={"clinic": ctx.schema, "restore_id": str(created.id)})
    return created


def start_verify(
    svc: Services,
    schema: str,
    record: BackupRecord,
    *,
    actor_id: str,
    actor_name: str | None = None,
    request_id: str | None = None,
    here: bool = True,
) -> RestoreRecord:
    """Create a full verification job and queue it (the API, the scheduler, the CLI). With
    `here`, refuse when this function has no verification server (the API's 503); the
    scheduler only queues: the restore worker runs the drill."""
    if here and svc.verifier is None:
        raise VerificationUnavailable(svc.config.verify_refused)
    if record.status != BackupStatus.COMPLETED:
        raise BackupNotCompleted(
            f"The backup is {record.status.value}; only completed backups can be verified."
        )
    job = RestoreRecord(
        id=uuid.uuid4(),
        kind=RestoreKind.VERIFY,
        status=RestoreStatus.PENDING,
        backup_id=record.id,
        requested_by=actor_id,
        requested_by_name=actor_name,
        request_id=request_id,
        created_at=svc.clock.now(),
        step="queued",
    )
    created = _restores(svc).create(schema, job, take_lock=False)
    try:
        _enqueue(svc, RestoreJob(kind="verify", schema=schema, restore_id=created.id))
    except ApiError:
        _restores(svc).fail(
            schema, created.id, "internal_error", "the job could not be queued", svc.clock.now()
        )
        raise
    return created


def request_verify(svc: Services, ctx: TenantContext, raw_id: str) -> RestoreRecord:
    """`POST /backups/{id}/verify` (admins by default): 202 with the queued drill."""
    backup_id = context.parse_id(raw_id)
    context.authorize(svc, ctx, Permission.RESTORE, "backup.verify", backup_id)
    record = context.visible(svc, ctx, backup_id)
    check_key_in_prefix(record.storage_key, ctx.schema)
    if record.status == BackupStatus.COMPLETED:
        require_file(svc, ctx, record, "backup.verify")
    try:
        job = start_verify(
            svc,
            ctx.schema,
            record,
            actor_id=ctx.user_id,
            actor_name=ctx.user_name,
            request_id=ctx.request_id,
        )
    except ApiError as error:
        context.audit(svc, ctx, "backup.verify", "rejected", backup_id, reason=error.code)
        raise
    context.audit(svc, ctx, "backup.verify", "accepted", backup_id, restore_id=str(job.id))
    return job


def list_restores(svc: Services, ctx: TenantContext, query: ListRestoresQuery) -> RestorePage:
    """`GET /restores`: restores and verifications, newest first (whoever may list backups:
    staff see that a restore runs, and should keep the clinic in maintenance meanwhile)."""
    context.authorize(svc, ctx, Permission.LIST, "restore.list")
    items, more = _restores(svc).list(
        ctx.schema,
        query.limit,
        context.decode_cursor(query.cursor) if query.cursor else None,
        query.kind.value if query.kind else None,
    )
    return RestorePage(
        items=items,
        next_cursor=context.encode_cursor(items[-1]) if more and items else None,
        undoable=_restores(svc).undoable(ctx.schema, svc.clock.now()),
    )


def get_restore(svc: Services, ctx: TenantContext, raw_id: str) -> tuple[RestoreRecord, bool]:
    """`GET /restores/{id}`: the job and whether it may be undone now."""
    restore_id = context.parse_id(raw_id, RestoreNotFound)
    context.authorize(svc, ctx, Permission.LIST, "restore.get")
    job = _restores(svc).get(ctx.schema, restore_id)
    if job is None:
        raise RestoreNotFound()
    return job, _restores(svc).undoable(ctx.schema, svc.clock.now()) == job.id


def request_undo(svc: Services, ctx: TenantContext, raw_id: str) -> RestoreRecord:
    """`POST /restores/{id}/undo` (admins by default): 202; takes the clinic's lock."""
    restore_id = context.parse_id(raw_id, RestoreNotFound)
    context.authorize(svc, ctx, Permission.RESTORE, "restore.undo")
    try:
        job = _restores(svc).request_undo(ctx.schema, restore_id, ctx.user_id, svc.clock.now())
    except ApiError as error:
        context.audit(svc, ctx, "restore.undo", "rejected", None, reason=error.code)
        raise
    try:
        _enqueue(svc, RestoreJob(kind="undo", schema=ctx.schema, restore_id=restore_id))
    except ApiError:
        _restores(svc).fail_undo(ctx.schema, restore_id, "internal_error", "not queued")
        raise
    context.audit(svc, ctx, "restore.undo", "accepted", job.backup_id, restore_id=str(restore_id))
    return job


# --- jobs ---------------------------------------------------------------------------------------


def run_job(svc: Services, job: Job) -> Any:
    """One message of the restore queue. Safe to deliver twice: each job is claimed atomically
    (pending → running) and a second delivery finds nothing to claim."""
    if isinstance(job, LightVerifyJob):
        return run_light_verify(svc, job)
    if isinstance(job, ReencryptJob):
        return run_reencrypt_job(svc, job)
    if isinstance(job, ReplicateJob):
        return run_replicate_job(svc, job)
    if isinstance(job, RestoreJob):
        if job.kind == "restore":
            return run_restore_job(svc, job)
        if job.kind == "verify":
            return run_verify_job(svc, job)
        return run_undo_job(svc, job)
    # A backup job on the restore queue is a routing bug: refused (it lands in the DLQ).
    raise ValueError("a backup job reached the restore worker")


def _clinic_ok(svc: Services, schema: str, job_id: uuid.UUID, undo: bool = False) -> bool:
    """The schema re-checked against the tenants table; an inactive clinic's job fails."""
    clinic = svc.tenants.get(schema)
    if clinic is not None and clinic.active:
        svc.records.ensure_schema(schema)
        return True
    logger.warning("job for a clinic that is not active; refused", extra={"clinic": schema})
    if clinic is not None and svc.restores is not None:
        svc.records.ensure_schema(schema)
        if undo:
            svc.restores.fail_undo(
                schema, job_id, ClinicGone.error_code, "the clinic is not active"
            )
        else:
            svc.restores.fail(
                schema, job_id, ClinicGone.error_code, "the clinic is not active", svc.clock.now()
            )
    return False


def _failure(error: BaseException, log: dict[str, Any]) -> tuple[str, str]:
    if isinstance(error, BackupRunError):
        logger.warning(
            "restore job failed",
            extra={**log, "error_code": error.error_code, "reason": error.message},
        )
        return error.error_code, error.message
    if isinstance(error, StorageUnavailable):
        logger.warning("restore job failed: storage", extra=log)
        return "storage_failed", "the backup could not be read from storage; nothing changed"
    if isinstance(error, DatabaseUnavailable):
        logger.warning("restore job failed: database", extra=log)
        return "restore_interrupted", "the database could not be reached; nothing changed"
    if isinstance(error, BackupNotCompleted):
        return "archive_invalid", "the backup is no longer available (deleted?); nothing changed"
    logger.exception("restore job failed unexpectedly", extra=log)
    return "internal_error", "unexpected error; see the worker logs"


def _pre_restore_backup(
    svc: Services,
    schema: str,
    job: RestoreRecord,
    heartbeat: Heartbeat,
    backup_id: uuid.UUID,
    snapshot: str,
) -> BackupRecord:
    """The live schema backed up through the normal pipeline, as a record created under the
    restore's lock and run under its lease (trigger `pre_restore`: retention keeps it for the
    undo window), at the snapshot the swap's session exported while holding the clinic's
    write locks."""
    assert svc.dumper is not None
    svc = replace(svc, dumper=svc.dumper.at_snapshot(snapshot))
    svc.records.create_pending_under_lock(
        schema,
        new_backup_record(
            svc,
            schema,
            backup_id,
            trigger=Trigger.PRE_RESTORE,
            actor_id=job.requested_by,
            actor_name=job.requested_by_name,
        ),
        lock_ref=job.id,
    )
    _restores(svc).update(schema, job.id, pre_restore_backup_id=backup_id)
    done = run_backup_job(
        svc,
        BackupJob(kind="backup", schema=schema, backup_id=backup_id, trigger=Trigger.PRE_RESTORE),
        heartbeat,
    )
    if done is None or done.status != BackupStatus.COMPLETED:
        reason = (done.error if done else None) or "it did not run"
        raise PreRestoreBackupFailed(
            f"the automatic backup of the clinic before the restore failed ({reason}); "
            "nothing changed"
        )
    return done


OUTSIDE_NAMED = 10


def outside_report(svc: Services, found: list[tuple[str, str]]) -> str:
    """The objects outside a clinic that depend on it, for the clinic's admin: named when they
    are not in another clinic's schema (`public`, shared schemas), else only counted (no
    clinic learns another's objects)."""
    named = [what for nsp, what in found if svc.tenants.get(nsp) is None]
    others = len(found) - len(named)
    text = ", ".join(named[:OUTSIDE_NAMED])
    if len(named) > OUTSIDE_NAMED:
        text += f" and {len(named) - OUTSIDE_NAMED} more"
    if others:
        text += f"{'; ' if text else ''}{others} in other clinics' schemas"
    return text


def _refuse_outside_dependents(svc: Services, schema: str, log: dict[str, Any]) -> None:
    """Objects outside the clinic that depend on its tables and that the swap does not
    recreate (views it does: `adapters/pgrestore.set_aside_views_sql`) would follow the
    rename to the kept schema and be dropped with it: refused, naming them, before anything
    is locked."""
    found = _restorer(svc).outside_dependents(schema)
    if not found:
        return
    logger.warning(
        "restore refused: objects outside the clinic depend on it",
        extra={**log, "dependents": [f"{nsp}: {what}" for nsp, what in found[:50]]},
    )
    raise OutsideDependents(
        "objects outside the clinic's schema depend on its tables and would not follow the "
        f"restore: {outside_report(svc, found)}; drop or move them (or recreate them after "
        "the restore; views over the clinic are recreated by the restore itself); nothing "
        "changed"
    )


def _run_claimed(
    svc: Services,
    job: RestoreJob,
    what: str,
    claim: Callable[[Lease], RestoreRecord | None],
    step: Callable[[LeasedRun, RestoreRecord], RestoreRecord | None],
    undo: bool = False,
) -> RestoreRecord | None:
    """A restore or an undo: the clinic re-checked, the job claimed with a fresh lease (a
    repeated delivery finds nothing pending), then `step` under the lease's heartbeat."""
    schema = job.schema_name
    log = {"clinic": schema, "restore_id": str(job.restore_id)}
    if not _clinic_ok(svc, schema, job.restore_id, undo=undo):
        return None
    _restorer(svc)  # this function must have the restore adapters
    lease = new_lease(svc)
    claimed = claim(lease)
    if claimed is None:
        logger.info(f"{what} not pending (a repeated delivery); skipped", extra=log)
        return None
    with leased_run(svc, schema, lease, log, restore_id=str(claimed.id)) as run:
        return step(run, claimed)


def run_restore_job(svc: Services, job: RestoreJob) -> RestoreRecord | None:
    def claim(lease: Lease) -> RestoreRecord | None:
        now = svc.clock.now()
        return _restores(svc).claim(
            job.schema_name, job.restore_id, "pre_restore_backup", now, lease
        )

    return _run_claimed(svc, job, "restore", claim, _restore)


def _restore(run: LeasedRun, claimed: RestoreRecord) -> RestoreRecord | None:
    svc, schema, lease, beat, log = run
    restores, restorer = _restores(svc), _restorer(svc)
    deadline = Deadline(svc.config.restore_deadline_seconds)
    timings: dict[str, float] = {}
    swapping = False
    try:
        source = svc.records.get(schema, claimed.backup_id)
        if source is None or source.status != BackupStatus.COMPLETED:
            raise ArchiveInvalid("the backup to restore is no longer available (deleted?)")
        # The whole stored object is checked before anything is locked: a damaged object
        # never gets as far as the clinic's tables. Then the pre-check (objects outside the
        # clinic that depend on it; the swap's dry run, schema only).
        pre_id = uuid.uuid4()
        restores.update(schema, claimed.id, step="verifying", details={"timings": timings})
        stored = _StoredCheck(svc, schema, source, deadline.restorer(restorer))
        stored.start()
        stored.join()
        timings["verify_seconds"] = stored.seconds
        try:
            stored.result()
        except ChecksumMismatch as mismatch:
            # The primary's copy is damaged: the replica's checked copy, when there is one.
            source = after_mismatch(svc, schema, source, mismatch)
            stored = _StoredCheck(svc, schema, source, deadline.restorer(restorer))
            stored.start()
            stored.join()
            timings["verify_seconds"] += stored.seconds
            stored.result()

        beat.check()
        deadline.check("the pre-check")
        restores.update(schema, claimed.id, step="checking", details={"timings": timings})
        started = time.monotonic()
        _refuse_outside_dependents(svc, schema, log)
        live = restorer.inspect(schema)
        plan = SwapPlan(
            schema=schema,
            old_schema=kept_schema_name(schema, claimed.id, "r"),
            owner=live.owner,
            server_major=live.server_major,
            completion_sql=restores.completion_sql(
                schema,
                claimed.id,
                AuditEntry(
                    action="restore.run",
                    outcome="completed",
                    actor_id=SYSTEM,
                    backup_id=claimed.backup_id,
                    details={
                        "restore_id": str(claimed.id),
                        "pre_restore_backup_id": str(pre_id),
                    },
                ),
                lease=lease,
            ),
        )
        with open_archive(svc, schema, source) as archive:
            deadline.restorer(restorer).check(archive.stream, plan)
        timings["check_seconds"] = round(time.monotonic() - started, 3)

        beat.check()
        deadline.check("the swap")
        # The kept schema's name is stored before the swap: the sweeper only ever drops names
        # it finds in a restore job.
        restores.update(
            schema,
            claimed.id,
            step="pre_restore_backup",
            old_schema=plan.old_schema,
            undo_until=svc.clock.now() + timedelta(days=svc.config.policy.restore_undo_days),
            details={"timings": timings, "server_version_num": live.server_version_num},
        )
        swapping = True
        with contextlib.ExitStack() as opened:

            def locked(snapshot: str) -> tuple[Any, Any]:
                # The swap's session holds the clinic's write locks and waits: the
                # pre-restore backup at its snapshot holds every write committed before the
                # swap (docs/decisions.md). Writers wait for it and for the load.
                started = time.monotonic()
                _pre_restore_backup(deadline.services(svc), schema, claimed, beat, pre_id, snapshot)
                timings["pre_restore_backup_seconds"] = round(time.monotonic() - started, 3)
                restores.update(schema, claimed.id, step="restoring", details={"timings": timings})
                beat.check()
                # The swap's own transaction checks the lease and releases it with its COMMIT.
                beat.ending()
                archive = opened.enter_context(open_archive(svc, schema, source))
                return archive.stream, archive.verified

            result = deadline.restorer(restorer).swap(plan, locked)
    except Exception as error:
        beat.stop()
        after = restores.get(schema, claimed.id)
        if swapping and after is not None and after.status == RestoreStatus.COMPLETED:
            # The COMMIT went through and only the report of it was lost.
            logger.warning("the swap committed although its session reported a failure", extra=log)
            return after
        if after is not None and after.status == RestoreStatus.FAILED:
            # Failed by whoever took its expired lease over (stale, with the reason, counted).
            logger.warning("restore stopped: it lost the clinic's lease", extra=log)
            return after
        code, message = _nothing_changed(error, deadline, log)
        restores.fail(schema, claimed.id, code, message, svc.clock.now(), {"timings": timings})
        svc.metrics.add("RestoreFailed", 1, "Count")
        _audit_failed(run, claimed, "restore.run", code)
        return restores.get(schema, claimed.id)
    beat.stop()

    # Committed: the job is completed, the lock released and the audit written, all in the
    # swap's own transaction. What follows only adds the measurements.
    timings["restore_seconds"] = round(result.seconds, 3)
    restores.update(
        schema,
        claimed.id,
        lock_seconds=round(result.lock_seconds, 3),
        details={
            "timings": timings,
            "lock_tries": result.lock_tries,
            "views_recreated": result.views_recreated,
            "table_counts": result.table_counts,
            "archive_bytes": result.archive_bytes,
        },
    )
    svc.metrics.add("RestoreSucceeded", 1, "Count")
    svc.metrics.add("RestoreSeconds", result.seconds, "Seconds")
    svc.metrics.add("RestoreLockSeconds", result.lock_seconds, "Seconds")
    logger.info(
        "restore completed",
        extra={**log, "lock_seconds": round(result.lock_seconds, 3), **timings},
    )
    return restores.get(schema, claimed.id)


def _past_deadline(error: BaseException, deadline: Deadline) -> BaseException:
    """A phase that failed because the job's deadline passed (pg_dump or pg_restore stopped
    at it) is reported as what it is: the restore ran out of time, nothing changed."""
    if deadline.passed and not isinstance(
        error, ChecksumMismatch | ArchiveInvalid | MissingDependency | RestoreFailed
    ):
        return RestoreInterrupted(
            "the restore did not finish within its time limit (RESTORE_TIMEOUT_SECONDS); "
            "nothing changed (use the operator CLI for clinics this large)"
        )
    return error


def _nothing_changed(error: Exception, deadline: Deadline, log: dict[str, Any]) -> tuple[str, str]:
    """The failed restore's or undo's code and message, which say that nothing changed."""
    code, message = _failure(_past_deadline(error, deadline), log)
    if "nothing changed" not in message:
        message = f"{message}; nothing changed"
    return code, message


def _audit_failed(run: LeasedRun, claimed: RestoreRecord, action: str, code: str) -> None:
    context.audit_by(
        run.svc,
        run.schema,
        SYSTEM,
        action,
        "failed",
        backup_id=claimed.backup_id,
        restore_id=str(claimed.id),
        error_code=code,
    )


def run_undo_job(svc: Services, job: RestoreJob) -> RestoreRecord | None:
    def claim(lease: Lease) -> RestoreRecord | None:
        return _restores(svc).claim_undo(job.schema_name, job.restore_id, lease)

    return _run_claimed(svc, job, "undo", claim, _undo, undo=True)


def _undo(run: LeasedRun, claimed: RestoreRecord) -> RestoreRecord | None:
    svc, schema, lease, beat, log = run
    restores, restorer = _restores(svc), _restorer(svc)
    deadline = Deadline(svc.config.restore_deadline_seconds)
    try:
        if not claimed.old_schema or not restorer.schema_exists(claimed.old_schema):
            raise RestoreFailed("the clinic's previous data is no longer kept; nothing changed")
        _refuse_outside_dependents(svc, schema, log)
        undo_schema = kept_schema_name(schema, claimed.id, "u")
        restores.update(schema, claimed.id, undo_schema=undo_schema)
        beat.check()
        beat.ending()
        result = deadline.restorer(restorer).swap_back(
            UndoPlan(
                schema=schema,
                old_schema=claimed.old_schema,
                undo_schema=undo_schema,
                completion_sql=restores.completion_sql(
                    schema,
                    claimed.id,
                    AuditEntry(
                        action="restore.undo",
                        outcome="completed",
                        actor_id=claimed.undo_requested_by or SYSTEM,
                        backup_id=claimed.backup_id,
                        details={"restore_id": str(claimed.id)},
                    ),
                    undo=True,
                    lease=lease,
                ),
            )
        )
    except Exception as error:
        beat.stop()
        after = restores.get(schema, claimed.id)
        if after is not None and after.status == RestoreStatus.UNDONE:
            return after
        code, message = _nothing_changed(error, deadline, log)
        # Only while this run still holds the lease (a takeover failed the undo already).
        restores.fail_undo(schema, claimed.id, code, message, lease)
        _audit_failed(run, claimed, "restore.undo", code)
        return restores.get(schema, claimed.id)
    beat.stop()
    restores.update(
        schema,
        claimed.id,
        details={
            "undo": {
                "seconds": round(result.seconds, 3),
                "lock_seconds": round(result.lock_seconds, 3),
                "views_recreated": result.views_recreated,
            }
        },
    )
    logger.info("restore undone", extra={**log, "lock_seconds": round(result.lock_seconds, 3)})
    return restores.get(schema, claimed.id)


def run_verify_job(svc: Services, job: RestoreJob) -> RestoreRecord | None:
    schema = job.schema_name
    log = {"clinic": schema, "restore_id": str(job.restore_id)}
    if not _clinic_ok(svc, schema, job.restore_id):
        return None
    restores = _restores(svc)
    lease = new_lease(svc)
    claimed = restores.claim(schema, job.restore_id, "verifying", svc.clock.now(), lease)
    if claimed is None:
        logger.info("verification not pending (a repeated delivery); skipped", extra=log)
        return None
    # A drill takes no lock (nothing live changes): its lease is on its own job row, so the
    # sweeper never fails a drill that runs, however long.
    with start_heartbeat(svc, schema, lease, job_row=True, restore_id=str(claimed.id)) as beat:
        return _verify(svc, schema, claimed, beat, log)


def _verify(
    svc: Services, schema: str, claimed: RestoreRecord, beat: Heartbeat, log: dict[str, Any]
) -> RestoreRecord | None:
    restores = _restores(svc)
    record = svc.records.get(schema, claimed.backup_id)
    outcome: str | None = None
    details: dict[str, Any] = {}
    try:
        if svc.verifier is None:
            raise VerificationNotConfigured(svc.config.verify_refused or "no verification database")
        if record is None or record.status != BackupStatus.COMPLETED:
            raise ArchiveInvalid("the backup is no longer available (deleted?)")
        try:
            drill = _drill(svc, schema, record)
        except (ChecksumMismatch, ArchiveInvalid) as mismatch:
            # The primary's copy is damaged: the replica's checked copy, when there is one.
            record = after_mismatch(svc, schema, record, mismatch)
            drill = _drill(svc, schema, record)
        details = dict(drill.details)
        passed = drill.passed
        if record.table_counts is not None and record.table_counts != details.get("table_counts"):
            # The light check counted another archive's rows than this read did.
            details["light_check_counts_differ"] = True
            passed = False
        outcome = "passed" if passed else "failed"
        beat.stop()
        beat.check()
        if not passed:
            raise VerificationFailed(
                "the restored row counts differ from the archive's: "
                + ", ".join(sorted(details.get("mismatches") or {})[:5] or ["light check"])
            )
    except Exception as error:
        beat.stop()
        code, message = _failure(error, log)
        if isinstance(error, _ARCHIVE_FAULTS) and record is not None:
            outcome = "failed"
            details = {**details, "error_code": code, "error": message}
            _store_verification(svc, schema, record, outcome, details)
        restores.fail(
            schema, claimed.id, code, message, svc.clock.now(), {"outcome": outcome, **details}
        )
        _audit_system(svc, schema, "backup.verify", outcome or "failed", claimed, code)
        return restores.get(schema, claimed.id)
    assert record is not None
    _store_verification(svc, schema, record, outcome, details)
    restores.complete(schema, claimed.id, svc.clock.now(), {"outcome": outcome, **details})
    _audit_system(svc, schema, "backup.verify", outcome, claimed, None)
    svc.metrics.add("VerificationPassed", 1, "Count")
    logger.info("verification passed", extra={**log, "seconds": details.get("seconds")})
    return restores.get(schema, claimed.id)


def _drill(svc: Services, schema: str, record: BackupRecord) -> Any:
    assert svc.verifier is not None
    with open_archive(svc, schema, record) as archive:
        extensions = _restorer(svc).needed_extensions(archive.stream)
    with open_archive(svc, schema, record) as archive:
        return svc.verifier.drill(schema, archive.stream, archive.verified, extensions)


def _store_verification(
    svc: Services, schema: str, record: BackupRecord, outcome: str, details: dict[str, Any]
) -> None:
    now = svc.clock.now()
    updated = _restores(svc).set_verification(schema, record.id, outcome, details, now)
    if updated is not None:
        update_manifest(
            svc,
            schema,
            updated,
            verified_at=now.isoformat(),
            verify_outcome=outcome,
            verify_details=details,
        )
    if outcome != "passed":
        svc.metrics.add("VerificationFailed", 1, "Count")


def _audit_system(
    svc: Services,
    schema: str,
    action: str,
    outcome: str,
    job: RestoreRecord,
    error_code: str | None,
) -> None:
    details: dict[str, Any] = {"restore_id": str(job.id)}
    if error_code:
        details["error_code"] = error_code
    svc.records.audit(
        schema,
        AuditEntry(
            action=action,
            outcome=outcome,
            actor_id=SYSTEM,
            backup_id=job.backup_id,
            details=details,
        ),
    )


def run_light_verify(svc: Services, job: LightVerifyJob) -> BackupRecord | None:
    """The check after every backup: read the object through `open_archive` (sha256), let
    pg_restore read the table of contents and write the data as SQL, count each table's COPY
    rows. No database. Storage or database trouble raises, so the queue retries."""
    schema = job.schema_name
    log = {"clinic": schema, "backup_id": str(job.backup_id)}
    clinic = svc.tenants.get(schema)
    if clinic is None or not clinic.active:
        return None
    svc.records.ensure_schema(schema)
    record = svc.records.get(schema, job.backup_id)
    if record is None or record.status != BackupStatus.COMPLETED or record.checked_at is not None:
        return None
    counts: dict[str, int] | None = None
    error_text: str | None = None
    try:
        with open_archive(svc, schema, record) as archive:
            counts = _restorer(svc).count_rows(archive.stream)
        outcome = "passed"
    except (StorageUnavailable, DatabaseUnavailable):
        raise
    except BackupRunError as error:
        outcome, error_text = "failed", error.message
        logger.warning(
            "light check failed",
            extra={**log, "error_code": error.error_code, "reason": error.message},
        )
    now = svc.clock.now()
    updated = _restores(svc).set_check(schema, record.id, outcome, counts, error_text, now)
    if updated is not None:
        update_manifest(
            svc,
            schema,
            updated,
            table_counts=counts,
            checked_at=now.isoformat(),
            check_outcome=outcome,
            check_error=error_text,
        )
    context.audit_by(
        svc,
        schema,
        SYSTEM,
        "backup.check",
        outcome,
        backup_id=record.id,
        tables=len(counts or {}),
        rows=sum((counts or {}).values()),
    )
    svc.metrics.add("BackupChecked" if outcome == "passed" else "BackupCheckFailed", 1, "Count")
    return updated


# --- the scheduler's weekly drill ---------------------------------------------------------------


def schedule_verifications(
    svc: Services, schemas: list[str], now: datetime
) -> tuple[int, dict[str, str]]:
    """Queue a full drill of the newest completed backup of the clinics whose turn it is: each
    clinic once a week, spread over the week's hours (crc32 of its name). Returns how many
    were queued and the clinics that failed (each on its own: the others go on)."""
    failed: dict[str, str] = {}
    if not svc.config.verify_weekly or svc.dispatcher is None:
        return 0, failed
    hour = now.weekday() * 24 + now.hour
    queued = 0
    for schema in schemas:
        if zlib.crc32(schema.encode()) % HOURS_PER_WEEK != hour:
            continue
        try:
            newest = next(iter(svc.records.completed_backups(schema)), None)
            if newest is None:
                continue
            start_verify(svc, schema, newest, actor_id="scheduler", here=False)
            queued += 1
        except ApiError as error:
            logger.warning(
                "could not queue the weekly verification",
                extra={"clinic": schema, "error_code": error.code},
            )
        except Exception as error:
            failed[schema] = type(error).__name__
            logger.exception("the weekly verification of a clinic failed", extra={"clinic": schema})
    return queued, failed

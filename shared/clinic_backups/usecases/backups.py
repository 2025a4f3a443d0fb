"""What a backup is and what may happen to it: the domain logic behind every function.

This module talks only to ports (records, tenants, storage, dispatcher, dumper, clock,
metrics); `factory` picks the adapters. Every operation takes the caller's verified
`TenantContext` (or, for jobs, a schema re-checked against the tenants table), and every
storage call goes through `ScopedStorage`, which refuses keys outside the clinic's prefix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, NotRequired, TypedDict, Unpack

from clinic_backups.domain.errors import (
    ApiError,
    BackupCancelled,
    BackupFileMissing,
    BackupNotCancellable,
    BackupNotCompleted,
    BackupNotFound,
    BackupPurged,
    BackupRunError,
    ClinicGone,
    EncryptionKeyRequired,
    FieldProblem,
    Forbidden,
    LeaseLost,
    QuotaExceeded,
    StorageObjectMissing,
    StorageUnavailable,
    ValidationFailed,
)
from clinic_backups.domain.models import (
    EDITABLE_SETTINGS,
    BackupJob,
    BackupPage,
    BackupRecord,
    BackupSettingsUpdate,
    BackupStatus,
    ClinicSettings,
    CreateBackupRequest,
    Job,
    KeepRequest,
    Lease,
    LightVerifyJob,
    ListBackupsQuery,
    Permission,
    Role,
    SignedDownload,
    SignedPart,
    TenantContext,
    Trigger,
)
from clinic_backups.domain.names import (
    MANIFEST_SUFFIX,
    backup_file_name,
    backup_storage_key,
    check_key_in_prefix,
    manifest_key,
)
from clinic_backups.domain.parts import (
    effective_limit,
    leftover_keys,
    object_keys,
    part_key,
    stored_keys,
    upload_archive,
)
from clinic_backups.domain.ports import (
    EnqueueFailure,
    ListFilter,
    Renewal,
)
from clinic_backups.domain.retention import RetentionPlan, RetentionPolicy, plan_retention
from clinic_backups.domain.schedule import next_slot
from clinic_backups.domain.storage import ScopedStorage
from clinic_backups.observability import logger
from clinic_backups.usecases import keys
from clinic_backups.usecases.context import (
    Services,
    audit,
    audit_by,
    authorize,
    decode_cursor,
    encode_cursor,
    parse_id,
    visible,
)
from clinic_backups.usecases.lease import Heartbeat, guarded
from clinic_backups.usecases.manifests import (
    manifest_for,
    record_from_manifest,
    update_manifest,
)
from clinic_backups.usecases.replica import (
    extend_lock,
    purge_replica,
    purge_superseded,
    queue_replication,
    read_source,
)

ARCHIVE_CONTENT_TYPE = "application/octet-stream"
# What a failed backup's record says when the store refused the abort of its upload, until the
# sweeper's abort holds (and then).
PARTS_PENDING = "its unfinished parts are still in storage and will be removed"
PARTS_REMOVED = "its unfinished parts were removed"


# --- helpers ------------------------------------------------------------------------------


# --- reading ------------------------------------------------------------------------------


def list_backups(svc: Services, ctx: TenantContext, query: ListBackupsQuery) -> BackupPage:
    authorize(svc, ctx, Permission.LIST, "backup.list")
    include_deleted = query.include_deleted or query.status == BackupStatus.DELETED
    if include_deleted and ctx.role != Role.ADMIN:
        raise Forbidden("Only administrators can see deleted backups.")
    items, more = svc.records.list(
        ctx.schema,
        ListFilter(
            limit=query.limit,
            cursor=decode_cursor(query.cursor) if query.cursor else None,
            status=query.status,
            include_deleted=include_deleted,
        ),
    )
    return BackupPage(
        items=[with_purge_after(svc, r) for r in items],
        next_cursor=encode_cursor(items[-1]) if more and items else None,
    )


def get_backup(svc: Services, ctx: TenantContext, raw_id: str) -> BackupRecord:
    authorize(svc, ctx, Permission.LIST, "backup.get")
    return with_purge_after(svc, visible(svc, ctx, parse_id(raw_id)))


def purge_cutoff(svc: Services) -> datetime:
    """Backups deleted at or before this moment are past their grace period: the purge takes
    them, and they can no longer be undeleted."""
    return svc.clock.now() - timedelta(days=svc.config.delete_grace_days)


def with_purge_after(svc: Services, record: BackupRecord) -> BackupRecord:
    """The record as the API shows it: a deleted backup says when its file will be purged."""
    if record.status != BackupStatus.DELETED or record.deleted_at is None:
        return record
    return replace(
        record, purge_after=record.deleted_at + timedelta(days=svc.config.delete_grace_days)
    )


# --- creating -----------------------------------------------------------------------------


class BackupOrigin(TypedDict):
    """Who asks for a new backup, and why (every path that makes one)."""

    trigger: Trigger
    actor_id: str
    actor_name: str | None
    note: NotRequired[str | None]


def manual_by(ctx: TenantContext, note: str | None) -> BackupOrigin:
    """A backup someone asked for now (the API's `POST /backups`, the operator CLI)."""
    return BackupOrigin(
        trigger=Trigger.MANUAL, actor_id=ctx.user_id, actor_name=ctx.user_name, note=note
    )


def new_backup_record(
    svc: Services, schema: str, backup_id: uuid.UUID, **origin: Unpack[BackupOrigin]
) -> BackupRecord:
    """The one constructor of a new (pending) backup record, for every path that makes a
    backup (manual, scheduled, pre-restore…): encryption cannot be forgotten by one of them."""
    now = svc.clock.now()
    return BackupRecord(
        id=backup_id,
        status=BackupStatus.PENDING,
        trigger=origin["trigger"],
        file_name=backup_file_name(schema, backup_id, now),
        storage_key=backup_storage_key(schema, backup_id, now),
        created_by=origin["actor_id"],
        created_by_name=origin["actor_name"],
        created_at=now,
        compression=svc.config.compression,
        # Always on: the worker encrypts every archive (age) before it is stored.
        encryption="age",
        note=origin.get("note"),
    )


def prepare_backup(
    svc: Services,
    schema: str,
    *,
    backup_id: uuid.UUID | None = None,
    **origin: Unpack[BackupOrigin],
) -> tuple[BackupRecord, BackupJob]:
    """Create the pending record (taking the clinic's operation lock) and return it with the
    job to enqueue. The caller enqueues it, or calls `job_not_queued` when the queue refused."""
    svc.records.ensure_schema(schema)
    backup_id = backup_id or uuid.uuid4()
    record = svc.records.create_pending(schema, new_backup_record(svc, schema, backup_id, **origin))
    job = BackupJob(kind="backup", schema=schema, backup_id=backup_id, trigger=origin["trigger"])
    return record, job


def job_not_queued(svc: Services, job: BackupJob) -> None:
    """Never leave a pending record (and the clinic's lock) behind a job that does not exist."""
    svc.records.fail(
        job.schema_name,
        job.backup_id,
        "internal_error",
        "the job could not be queued",
        svc.clock.now(),
    )


def backup_queued(svc: Services, job: BackupJob) -> None:
    svc.metrics.add("BackupCreated", 1, "Count")
    logger.info(
        "backup queued",
        extra={
            "clinic": job.schema_name,
            "backup_id": str(job.backup_id),
            "trigger": job.trigger.value,
        },
    )


def enqueue_batch(svc: Services, jobs: Sequence[Job]) -> list[EnqueueFailure]:
    """Enqueue many jobs: in batches where the dispatcher has them (SQS), else one by one.
    Returns the jobs the queue did not take."""
    assert svc.dispatcher is not None, "this function cannot enqueue jobs"
    batch = getattr(svc.dispatcher, "enqueue_batch", None)
    if callable(batch):
        return list(batch(jobs))
    failures = []
    for job in jobs:
        try:
            svc.dispatcher.enqueue(job)
        except ApiError as error:
            failures.append(EnqueueFailure(job, error.code))
    return failures


def start_backup(
    svc: Services,
    schema: str,
    *,
    backup_id: uuid.UUID | None = None,
    **origin: Unpack[BackupOrigin],
) -> BackupRecord:
    """Create the pending record (taking the clinic's operation lock) and enqueue its job."""
    assert svc.dispatcher is not None, "this function cannot enqueue jobs"
    record, job = prepare_backup(svc, schema, backup_id=backup_id, **origin)
    try:
        svc.dispatcher.enqueue(job)
    except ApiError as error:
        job_not_queued(svc, job)
        raise error
    backup_queued(svc, job)
    return record


def create_backup(svc: Services, ctx: TenantContext, request: CreateBackupRequest) -> BackupRecord:
    """`POST /backups`."""
    authorize(svc, ctx, Permission.CREATE, "backup.create")
    since = svc.clock.now() - timedelta(days=1)
    if (
        svc.records.count_since(ctx.schema, Trigger.MANUAL.value, since)
        >= svc.config.manual_backups_per_day
    ):
        audit(svc, ctx, "backup.create", "rejected", reason="quota_exceeded")
        raise QuotaExceeded()
    try:
        record = start_backup(svc, ctx.schema, **manual_by(ctx, request.note))
    except ApiError as error:
        audit(svc, ctx, "backup.create", "rejected", reason=error.code)
        raise
    audit(svc, ctx, "backup.create", "accepted", record.id)
    return record


# --- the worker ---------------------------------------------------------------------------


def new_lease(svc: Services) -> Lease:
    return Lease.new(svc.config.policy.lock_lease_seconds)


def start_heartbeat(
    svc: Services, schema: str, lease: Lease, *, job_row: bool = False, **log: str
) -> Heartbeat:
    """Renew `lease` until stopped: the clinic's lock row, or (`job_row`: a verification) the
    job's own row. The repository is looked up at each beat, on the beat's own connection."""

    def renew() -> Renewal:
        if job_row:
            assert svc.restores is not None
            return svc.restores.renew_lease(schema, lease)
        return svc.records.renew_lease(schema, lease)

    return Heartbeat(
        lease, renew, close=svc.records.release_thread_connection, log={"clinic": schema, **log}
    ).start()


class LeasedRun(NamedTuple):
    """What a claimed job under the clinic's lease carries through its steps (a restore, an
    undo, a re-encryption): unpacked in one line by the step that runs it."""

    svc: Services
    schema: str
    lease: Lease
    beat: Heartbeat
    log: dict[str, Any]


@contextmanager
def leased_run(
    svc: Services, schema: str, lease: Lease, log: dict[str, Any], **ids: str
) -> Iterator[LeasedRun]:
    """The claimed job's heartbeat for the `with` block: whatever happens, a job that ended
    never renews its lease (the beat stops on exit)."""
    with start_heartbeat(svc, schema, lease, job_row=False, **ids) as beat:
        yield LeasedRun(svc, schema, lease, beat, log)


def run_backup_job(
    svc: Services, job: BackupJob, heartbeat: Heartbeat | None = None
) -> BackupRecord | None:
    """Run one queued backup. Safe to call twice for the same job: only the call that moves
    the record from pending to running does the work. The claim takes the clinic's lease and
    a heartbeat renews it while the backup runs; a backup made under another job's lease (a
    restore's pre-restore backup) is given that job's `heartbeat` instead."""
    assert svc.dumper is not None and svc.storage is not None
    schema = job.schema_name
    log = {"clinic": schema, "backup_id": str(job.backup_id)}
    clinic = svc.tenants.get(schema)
    if clinic is None or not clinic.active:
        # The job names a clinic that is not (or no longer) an active tenant: nothing runs.
        logger.warning("job for a clinic that is not active; refused", extra=log)
        if clinic is not None:
            svc.records.ensure_schema(schema)
            svc.records.fail(
                schema,
                job.backup_id,
                ClinicGone.error_code,
                "the clinic is not active",
                svc.clock.now(),
            )
        return None
    svc.records.ensure_schema(schema)
    lease = new_lease(svc) if heartbeat is None else None
    record = svc.records.claim(schema, job.backup_id, svc.clock.now(), lease)
    if record is None:
        logger.info("backup not pending (a repeated delivery); skipped", extra=log)
        return None

    storage = svc.scoped(schema)
    key = check_key_in_prefix(record.storage_key, schema)
    beat = heartbeat
    if lease is not None:
        beat = start_heartbeat(svc, schema, lease, backup_id=str(record.id))
    assert beat is not None
    stored: list[list[dict[str, Any]] | None] = [None]

    def upload(stream: Any) -> None:
        # The upload stops at its next read if the lease was taken over meanwhile.
        stored[0] = upload_archive(
            storage,
            key,
            guarded(stream, beat),
            ARCHIVE_CONTENT_TYPE,
            limit=object_limit(svc, storage),
            split=svc.config.split_archives,
        )

    try:
        try:
            # Read at run time: a key registered after the request still protects this backup.
            recipients = keys.recipients_for(svc, schema) if record.encryption == "age" else []
            keys.check_recipients(svc, recipients)
            result = svc.dumper.run(
                schema,
                upload,
                encrypt_to=[r["public_key"] for r in recipients] or None,
                # A cancel (heard by the job's own heartbeat) kills pg_dump at once.
                stop=beat.cancelled if heartbeat is None else None,
            )
            beat.check()
            finished_at = svc.clock.now()
            parts = stored[0]
            manifest = manifest_for(schema, record, result, finished_at, recipients, parts)
            storage.put_bytes(
                manifest_key(key), json.dumps(manifest, indent=2).encode(), "application/json"
            )
        finally:
            if heartbeat is None:
                beat.stop()  # the lease ends with the record's last write, just below
        # Refused (LeaseLost) when the lease was taken over: the taker failed the record.
        done = svc.records.complete(schema, record.id, result, finished_at, recipients, parts)
    except BaseException as error:
        # BaseException: a native library's panic (pyo3's PanicException) must fail the
        # backup and free the clinic's lock too. An interrupt does the same, then goes on.
        if beat.cancelled.is_set() and not isinstance(
            error, LeaseLost | KeyboardInterrupt | SystemExit
        ):
            # Whatever broke after the cancel was heard (pg_dump killed, the upload stopped)
            # is the cancel.
            error = BackupCancelled()
        _fail_run(svc, schema, record, storage, error)
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        return svc.records.get(schema, record.id)

    svc.metrics.add("BackupSucceeded", 1, "Count")
    svc.metrics.add("BackupBytes", result.size_bytes, "Bytes")
    svc.metrics.add("BackupSeconds", result.seconds, "Seconds")
    logger.info(
        "backup completed",
        extra={
            **log,
            "size_bytes": result.size_bytes,
            "parts": len(parts) if parts else 1,
            "seconds": round(result.seconds, 3),
            "toc_entries": result.toc_entries,
        },
    )
    audit_by(
        svc,
        schema,
        "system",
        "backup.run",
        "completed",
        backup_id=record.id,
        size_bytes=result.size_bytes,
    )
    _queue_light_check(svc, schema, record.id)
    queue_replication(svc, schema, record.id)
    if record.trigger == Trigger.SCHEDULED:
        _retain_after_backup(svc, schema)
    return done


def object_limit(svc: Services, storage: ScopedStorage) -> int | None:
    """The largest object the store takes: the smallest of the bucket's `file_size_limit`
    (asked at each run: it may change), S3's 10,000 parts and the project's upload limit
    (STORAGE_MAX_OBJECT_MB). Anything longer is stored as parts."""
    return effective_limit([storage.object_size_limit(), svc.config.max_object_bytes])


def _queue_light_check(svc: Services, schema: str, backup_id: uuid.UUID) -> None:
    """Queue the light check of the new archive (restore queue: sha256, table of contents,
    rows per table). Failure-tolerant: the backup is done whatever happens here."""
    if svc.dispatcher is None:
        return
    try:
        svc.dispatcher.enqueue(
            LightVerifyJob(kind="verify_light", schema=schema, backup_id=backup_id)
        )
    except Exception:
        logger.warning(
            "could not queue the light check; the backup itself succeeded",
            extra={"clinic": schema, "backup_id": str(backup_id)},
        )


def _retain_after_backup(svc: Services, schema: str) -> None:
    """Retention after a successful scheduled backup. Failure-tolerant: the backup is done
    whatever happens here, and the next scheduled backup tries retention again."""
    try:
        apply_retention(svc, schema)
    except Exception:
        logger.exception("retention failed; the backup itself succeeded", extra={"clinic": schema})
        svc.metrics.add("RetentionFailed", 1, "Count")


def _fail_run(
    svc: Services, schema: str, record: BackupRecord, storage: ScopedStorage, error: BaseException
) -> None:
    log = {"clinic": schema, "backup_id": str(record.id)}
    if isinstance(error, BackupCancelled):
        _end_cancelled(svc, schema, record, storage, log)
        return
    if isinstance(error, LeaseLost):
        # Taken over: the taker failed the record (stale, with the reason) and counted it.
        # Only what this run may have stored goes.
        logger.warning("backup stopped: it lost the clinic's lease", extra=log)
        _remove_objects(storage, record, log)
        return
    if isinstance(error, BackupRunError):
        code, message = error.error_code, error.message
        logger.warning("backup failed", extra={**log, "error_code": code, "reason": message})
    elif isinstance(error, StorageUnavailable):
        # boto3 aborts a failed multipart upload, but when the store itself is gone that
        # abort fails too (and is only logged): the parts stay until the sweeper's abort holds.
        left = _upload_left(storage, record.storage_key)
        code = "storage_failed"
        message = f"the upload to storage failed; {PARTS_PENDING if left else 'no file was kept'}"
        logger.warning("backup failed", extra={**log, "error_code": code, "parts_left": left})
    elif isinstance(error, KeyboardInterrupt | SystemExit):
        code, message = "internal_error", "the worker was stopped during the backup"
        logger.warning("backup interrupted", extra=log)
    else:
        code, message = "internal_error", "unexpected error; see the worker logs"
        logger.exception("backup failed unexpectedly", extra=log)
    _remove_objects(storage, record, log)
    svc.records.fail(schema, record.id, code, message, svc.clock.now())
    svc.metrics.add("BackupFailed", 1, "Count")
    audit_by(svc, schema, "system", "backup.run", "failed", backup_id=record.id, error_code=code)


def _end_cancelled(
    svc: Services,
    schema: str,
    record: BackupRecord,
    storage: ScopedStorage,
    log: dict[str, Any],
) -> None:
    """A running backup that heard of its cancel: pg_dump was stopped and boto3 aborted the
    multipart upload as the guarded stream raised; whatever still exists goes (an object
    completed just before the cancel, its manifest, an upload whose abort failed), then the
    record ends `cancelled` and the clinic's lock is freed. What the store refused to remove
    is left to the sweeper (the job is no longer in flight) and logged."""
    logger.info("backup cancelled on request; removing what it stored", extra=log)
    _remove_objects(storage, record, log)
    try:
        for upload in storage.pending_uploads():
            if upload.key == record.storage_key:
                storage.abort_upload(upload.key, upload.upload_id)
    except Exception:
        logger.warning("could not abort a cancelled backup's upload; the sweeper will", extra=log)
    if not svc.records.finish_cancelled(schema, record.id, svc.clock.now()):
        logger.warning("the cancelled backup was no longer running (taken over)", extra=log)
        return
    svc.metrics.add("BackupCancelled", 1, "Count")
    audit_by(svc, schema, "system", "backup.run", "cancelled", backup_id=record.id)


def _remove_objects(storage: ScopedStorage, record: BackupRecord, log: dict[str, Any]) -> None:
    # Whatever may have reached storage goes: a failed backup leaves no object behind.
    try:
        found = leftover_keys(storage, record.storage_key)
    except Exception:
        # The parts could not be listed: the sweeper reports any left as orphans.
        found = [record.storage_key, manifest_key(record.storage_key)]
    try:
        storage.delete(found)
    except Exception:
        logger.warning("could not remove a failed backup's objects", extra=log)


def _upload_left(storage: ScopedStorage, key: str) -> bool:
    """Whether an unfinished upload of `key` is still in storage (when the store cannot say,
    assume it is: the sweeper will find out)."""
    try:
        # The archive's own key or one of its parts (`<key>.part002`…).
        return any(upload.key.startswith(key) for upload in storage.pending_uploads())
    except Exception:
        return True


# --- downloading and deleting -------------------------------------------------------------


def note_file_missing(svc: Services, schema: str, record: BackupRecord) -> None:
    """A read found the backup's file gone from storage: mark the record (it stays listed and
    says so) and leave a line for the operator. The object was removed behind the product's
    back (a console, a bucket policy, a lost store): only retention and deletes remove files."""
    logger.warning(
        "backup file missing from storage", extra={"clinic": schema, "backup_id": str(record.id)}
    )
    svc.records.mark_file_missing(schema, record.id, svc.clock.now())


def require_file(
    svc: Services, ctx: TenantContext, record: BackupRecord, action: str
) -> ScopedStorage:
    """Where the backup's file can be read: the primary store, or the replica when an object
    is missing from the primary (or has the wrong size) and the replica holds a checked copy.
    410 `backup_file_missing` (the record marked) when neither has it; an unreachable store
    stays a 503 `service_unavailable`."""
    storage, from_replica = read_source(svc, ctx.schema, record, action)
    if from_replica:
        return storage
    if any(storage.head(key) is None for key in object_keys(record)):
        note_file_missing(svc, ctx.schema, record)
        audit(svc, ctx, action, "rejected", record.id, reason="backup_file_missing")
        raise BackupFileMissing()
    return storage


def request_download(svc: Services, ctx: TenantContext, raw_id: str) -> SignedDownload:
    """`GET /backups/{id}/download`: a short-lived signed URL (never logged)."""
    backup_id = parse_id(raw_id)
    authorize(svc, ctx, Permission.DOWNLOAD, "backup.download", backup_id)
    record = visible(svc, ctx, backup_id)
    if record.status != BackupStatus.COMPLETED:
        audit(svc, ctx, "backup.download", "rejected", backup_id, status=record.status.value)
        raise BackupNotCompleted(
            f"The backup is {record.status.value}; only completed backups can be downloaded."
        )
    assert record.size_bytes is not None and record.sha256 is not None
    clinic_keys = [r for r in record.recipients if r.get("kind") == "clinic"]
    if record.encryption == "age" and not clinic_keys:
        # Only the platform could open it: a download would be useless to the clinic.
        audit(svc, ctx, "backup.download", "rejected", backup_id, reason="no_clinic_key")
        raise EncryptionKeyRequired()
    # The replica's store signs the URL when the copy is read from there.
    storage = require_file(svc, ctx, record, "backup.download")
    parts = []
    try:
        if record.parts:
            # One URL per part, each downloaded as `<file name>.part001`…: joined in order they
            # are the file (`sha256`, `size_bytes`).
            for number, part in enumerate(record.parts, start=1):
                name = part_key(record.file_name, number)
                parts.append(
                    SignedPart(
                        url=storage.signed_download_url(
                            str(part["key"]), svc.config.download_ttl, name
                        ),
                        name=name,
                        size_bytes=int(part["size_bytes"]),
                        sha256=str(part["sha256"]),
                    )
                )
            # The single-URL shape stays (an older client gets the first part, named as one).
            url = parts[0].url
        else:
            url = storage.signed_download_url(
                record.storage_key, svc.config.download_ttl, record.file_name
            )
    except StorageObjectMissing:  # gone between the check and the signing (Supabase says so)
        note_file_missing(svc, ctx.schema, record)
        audit(svc, ctx, "backup.download", "rejected", backup_id, reason="backup_file_missing")
        raise BackupFileMissing() from None
    expires_at = svc.clock.now() + timedelta(seconds=svc.config.download_ttl)
    audit(svc, ctx, "backup.download", "signed", backup_id, ttl_seconds=svc.config.download_ttl)
    return SignedDownload(
        url=url,
        expires_at=expires_at,
        file_name=record.file_name,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        encryption=record.encryption,
        recipients=[
            {"label": r.get("label"), "fingerprint": r.get("fingerprint")} for r in clinic_keys
        ],
        parts=parts,
    )


def delete_backup(svc: Services, ctx: TenantContext, raw_id: str) -> None:
    """`DELETE /backups/{id}`: a soft delete; the object is purged after the grace period."""
    backup_id = parse_id(raw_id)
    authorize(svc, ctx, Permission.DELETE, "backup.delete", backup_id)
    # A record whose key left the clinic's prefix (tampered) is refused before anything changes.
    check_key_in_prefix(visible(svc, ctx, backup_id).storage_key, ctx.schema)
    try:
        record = svc.records.soft_delete(ctx.schema, backup_id, ctx.user_id, svc.clock.now())
    except ApiError as error:
        audit(svc, ctx, "backup.delete", "rejected", backup_id, reason=error.code)
        raise
    if record is None:
        raise BackupNotFound()
    if record.status == BackupStatus.DELETED and record.deleted_at is not None:
        _mark_manifest_deleted(svc, ctx.schema, record)
    audit(svc, ctx, "backup.delete", "deleted", backup_id, grace_days=svc.config.delete_grace_days)


def _mark_manifest_deleted(svc: Services, schema: str, record: BackupRecord) -> None:
    """Keep the manifest in step, so a rebuild from storage does not resurrect the backup."""
    if record.size_bytes is None:
        return  # a failed backup has no objects
    storage = svc.scoped(schema)
    key = manifest_key(record.storage_key)
    try:
        manifest = json.loads(storage.get_bytes(key))
        manifest["deleted_at"] = record.deleted_at.isoformat() if record.deleted_at else None
        storage.put_bytes(key, json.dumps(manifest, indent=2).encode(), "application/json")
    except (StorageObjectMissing, StorageUnavailable, ValueError):
        logger.warning(
            "could not mark the manifest deleted",
            extra={"clinic": schema, "backup_id": str(record.id)},
        )


def undelete_backup(svc: Services, ctx: TenantContext, raw_id: str) -> BackupRecord:
    """`POST /backups/{id}/undelete` (DELETE_ROLES): a deleted backup within its grace period
    is `completed` again, its manifest too. Already completed: unchanged (idempotent). Past
    the grace period, purged, or its file gone: 409 `backup_purged`; any other status (or a
    backup that had not completed before it was deleted): 409 `backup_not_completed`."""
    backup_id = parse_id(raw_id)
    authorize(svc, ctx, Permission.DELETE, "backup.undelete", backup_id)
    record = visible(svc, ctx, backup_id)
    key = check_key_in_prefix(record.storage_key, ctx.schema)
    if record.status == BackupStatus.COMPLETED:
        audit(svc, ctx, "backup.undelete", "unchanged", backup_id)
        return record
    if record.status != BackupStatus.DELETED or record.size_bytes is None:
        audit(svc, ctx, "backup.undelete", "rejected", backup_id, status=record.status.value)
        raise BackupNotCompleted(
            f"The backup is {record.status.value}"
            + (" (it never completed)" if record.status == BackupStatus.DELETED else "")
            + "; only a deleted backup that had completed can be recovered."
        )
    cutoff = purge_cutoff(svc)
    # Past the cutoff the purge may be removing the file right now: never race it.
    gone = record.purged_at is not None or (record.deleted_at or cutoff) <= cutoff
    if not gone:
        stored = svc.scoped(ctx.schema).head(key)
        gone = stored is None or stored.size != record.size_bytes
    undeleted = None if gone else svc.records.undelete(ctx.schema, backup_id, cutoff)
    if undeleted is None:
        audit(svc, ctx, "backup.undelete", "rejected", backup_id, reason=BackupPurged.code)
        raise BackupPurged()
    update_manifest(svc, ctx.schema, undeleted, deleted_at=None)
    audit(svc, ctx, "backup.undelete", "undeleted", backup_id)
    logger.info("backup undeleted", extra={"clinic": ctx.schema, "backup_id": str(backup_id)})
    return undeleted


def cancel_backup(svc: Services, ctx: TenantContext, raw_id: str) -> BackupRecord:
    """`POST /backups/{id}/cancel` (admins, and the backup's author): a pending backup ends
    `cancelled` at once; a running one is asked to (`cancel_requested_at`) and its worker
    stops at its next heartbeat. Anything finished: 409 `backup_not_cancellable`."""
    backup_id = parse_id(raw_id)
    # Who may see the backup first (no 403 that tells an id exists to a role that may not).
    authorize(svc, ctx, Permission.LIST, "backup.cancel", backup_id)
    record = visible(svc, ctx, backup_id)
    author = ctx.can(Permission.CREATE) and record.created_by == ctx.user_id
    if ctx.role != Role.ADMIN and not author:
        audit(svc, ctx, "backup.cancel", "denied", backup_id)
        raise Forbidden("Only administrators and the person who started it can cancel a backup.")
    if record.trigger == Trigger.PRE_RESTORE and record.status in (
        BackupStatus.PENDING,
        BackupStatus.RUNNING,
    ):
        # It runs under its restore's lease, which no cancel reaches: the restore is the job.
        audit(svc, ctx, "backup.cancel", "rejected", backup_id, reason="pre_restore")
        raise BackupNotCancellable(
            "This backup is part of a restore in progress and cannot be cancelled on its own."
        )
    updated = svc.records.request_cancel(ctx.schema, backup_id, svc.clock.now())
    if updated is None:
        raise BackupNotFound()
    if updated.status == BackupStatus.CANCELLED and record.status == BackupStatus.PENDING:
        svc.metrics.add("BackupCancelled", 1, "Count")
        audit(svc, ctx, "backup.cancel", "cancelled", backup_id)
    elif updated.status == BackupStatus.RUNNING:
        audit(svc, ctx, "backup.cancel", "requested", backup_id)
    else:
        audit(svc, ctx, "backup.cancel", "rejected", backup_id, status=updated.status.value)
        raise BackupNotCancellable()
    logger.info(
        "backup cancel",
        extra={"clinic": ctx.schema, "backup_id": str(backup_id), "status": updated.status.value},
    )
    return updated


def purge_deleted(svc: Services, schema: str) -> int:
    """Remove the objects of backups soft-deleted longer than the grace period ago."""
    svc.records.ensure_schema(schema)
    cutoff = purge_cutoff(svc)
    storage = svc.scoped(schema)
    purged = 0
    # The replica's copy is left here (its lock decides when it may go: `purge_replica`).
    for record in svc.records.purgeable(schema, cutoff):
        storage.delete(stored_keys(record))
        svc.records.mark_purged(schema, record.id, svc.clock.now())
        audit_by(svc, schema, "system", "backup.purge", "purged", backup_id=record.id)
        purged += 1
    if purged:
        logger.info("purged deleted backups", extra={"clinic": schema, "count": purged})
    if svc.replica is not None:
        try:
            purge_replica(svc, schema, svc.records.replica_purgeable(schema, svc.clock.now()))
            purge_superseded(svc, schema)
        except StorageUnavailable:
            # The primary's purge stands; the replica's copies wait for a later sweep.
            logger.warning("the replica store is unavailable; its copies are purged later")
            svc.metrics.add("ReplicaPurgeFailed", 1, "Count")
    return purged


# --- recovery -----------------------------------------------------------------------------


@dataclass
class RebuildReport:
    manifests: int = 0
    inserted: int = 0
    already_present: int = 0
    missing_objects: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def rebuild_records(svc: Services, schema: str) -> RebuildReport:
    """Rebuild `backup_records` of one clinic from the manifests in storage (after the
    clinic's schema was dropped or damaged). Existing records are left as they are."""
    svc.records.ensure_schema(schema)
    storage = svc.scoped(schema)
    report = RebuildReport()
    objects = {info.key: info for info in storage.list()}
    for key in sorted(k for k in objects if k.endswith(MANIFEST_SUFFIX)):
        report.manifests += 1
        try:
            record = record_from_manifest(schema, json.loads(storage.get_bytes(key)))
        except (ValueError, KeyError, TypeError, AssertionError):
            report.invalid.append(key)
            continue
        found = [objects.get(k) for k in object_keys(record)]
        expected = [int(p["size_bytes"]) for p in record.parts] if record.parts else None
        if (
            any(info is None for info in found)
            or sum(info.size for info in found if info) != record.size_bytes
            or (expected is not None and [info.size for info in found if info] != expected)
        ):
            report.missing_objects.append(record.storage_key)
            continue
        if svc.records.insert_from_manifest(schema, record):
            report.inserted += 1
        else:
            report.already_present += 1
    logger.info(
        "rebuilt records from manifests", extra={"clinic": schema, "inserted": report.inserted}
    )
    return report


def migrate_all(svc: Services) -> dict[str, Any]:
    """Create or upgrade the backup tables of every active clinic. Clinics whose name the
    product cannot back up are listed under `unsupported` (never skipped silently)."""
    done = []
    for clinic in svc.tenants.active_clinics():
        svc.records.ensure_schema(clinic.schema)
        done.append(clinic.schema)
    return {"migrated": done, "unsupported": svc.tenants.unsupported_clinics()}


# --- clinic settings, the keep flag and retention -------------------------------------------


def clinic_settings(svc: Services, schema: str) -> ClinicSettings:
    """The clinic's saved settings, or the platform's defaults (tables must exist)."""
    return svc.schedules.get_settings(schema) or svc.config.policy.defaults


@dataclass(frozen=True)
class Me:
    """`GET /me`: the caller, the clinic's own locale and time zone (its backup settings),
    and what the operator switched on (edge.responses shapes it)."""

    caller: TenantContext
    locale: str
    time_zone: str
    host_maintenance_mode: bool
    replica_configured: bool


def describe_me(svc: Services, ctx: TenantContext) -> Me:
    """`GET /me`, with the clinic's own locale and time zone (backup settings)."""
    svc.records.ensure_schema(ctx.schema)
    settings = clinic_settings(svc, ctx.schema)
    return Me(
        caller=ctx,
        locale=settings.locale,
        time_zone=settings.time_zone,
        host_maintenance_mode=svc.config.host_maintenance_mode,
        replica_configured=svc.config.replica_configured or svc.replica is not None,
    )


@dataclass(frozen=True)
class SettingsView:
    """The clinic's backup settings as `GET/PUT /backup-settings` answer them: with the
    platform floor and the next scheduled run (edge.responses shapes it)."""

    settings: ClinicSettings
    min_retention_days: int
    next_run_at: datetime | None


def settings_view(svc: Services, settings: ClinicSettings) -> SettingsView:
    upcoming = next_slot(settings, svc.clock.now())
    return SettingsView(
        settings=settings,
        min_retention_days=svc.config.policy.min_retention_days,
        next_run_at=upcoming.scheduled_at if upcoming else None,
    )


def get_backup_settings(svc: Services, ctx: TenantContext) -> SettingsView:
    """`GET /backup-settings`: everyone who may list backups may read them."""
    authorize(svc, ctx, Permission.LIST, "settings.get")
    return settings_view(svc, clinic_settings(svc, ctx.schema))


def update_backup_settings(
    svc: Services, ctx: TenantContext, request: BackupSettingsUpdate
) -> SettingsView:
    """`PUT /backup-settings` (admins by default). The platform floor is checked here."""
    authorize(svc, ctx, Permission.MANAGE_SETTINGS, "settings.update")
    floor = svc.config.policy.min_retention_days
    if request.keep_daily < floor:
        audit(svc, ctx, "settings.update", "rejected", reason="below_floor")
        raise ValidationFailed(
            details=[
                FieldProblem(
                    "keep_daily",
                    f"must be at least {floor}: the platform keeps every scheduled "
                    f"backup of the last {floor} days",
                )
            ]
        )
    before = clinic_settings(svc, ctx.schema)
    saved = svc.schedules.save_settings(
        ctx.schema,
        ClinicSettings(
            enabled=request.enabled,
            hour=request.hour,
            weekdays=tuple(request.weekdays),
            time_zone=request.time_zone,
            locale=request.locale or before.locale,
            keep_daily=request.keep_daily,
            keep_weekly=request.keep_weekly,
            keep_monthly=request.keep_monthly,
            updated_by=ctx.user_id,
            updated_at=svc.clock.now(),
        ),
    )
    changed = {
        name: [getattr(before, name), getattr(saved, name)]
        for name in EDITABLE_SETTINGS
        if getattr(before, name) != getattr(saved, name)
    }
    audit(
        svc,
        ctx,
        "settings.update",
        "saved",
        changed={
            k: [list(v) if isinstance(v, tuple) else v for v in pair] for k, pair in changed.items()
        },
    )
    return settings_view(svc, saved)


def set_backup_keep(
    svc: Services, ctx: TenantContext, raw_id: str, request: KeepRequest
) -> BackupRecord:
    """`PATCH /backups/{id}` `{"keep": …}`: protect a backup from retention (or stop
    protecting it). Deciding what retention may delete follows DELETE_ROLES."""
    backup_id = parse_id(raw_id)
    authorize(svc, ctx, Permission.DELETE, "backup.keep", backup_id)
    record = visible(svc, ctx, backup_id)
    check_key_in_prefix(record.storage_key, ctx.schema)
    if request.keep and record.status != BackupStatus.COMPLETED:
        audit(svc, ctx, "backup.keep", "rejected", backup_id, status=record.status.value)
        raise BackupNotCompleted(
            f"The backup is {record.status.value}; only completed backups can be marked to keep."
        )
    updated = svc.records.set_keep(ctx.schema, backup_id, request.keep)
    if updated is None:
        raise BackupNotFound()
    update_manifest(svc, ctx.schema, updated, keep=updated.keep)
    if updated.keep:
        # Promoted: the replica's copy is locked for as long as a kept backup may live.
        extend_lock(svc, ctx.schema, updated)
    audit(svc, ctx, "backup.keep", "kept" if updated.keep else "released", backup_id)
    return with_purge_after(svc, updated)


def apply_retention(svc: Services, schema: str) -> RetentionPlan:
    """Soft-delete the completed backups the clinic's retention no longer keeps (the core's
    grace period then applies before the purge)."""
    svc.records.ensure_schema(schema)
    settings = clinic_settings(svc, schema)
    policy = RetentionPolicy.for_clinic(
        settings, svc.config.policy.min_retention_days, svc.config.policy.restore_undo_days
    )
    now = svc.clock.now()
    completed = svc.records.completed_backups(schema)
    plan = plan_retention(
        completed,
        policy,
        settings.time_zone,
        now,
        in_use=svc.records.backups_in_use(schema),
    )
    if svc.replica is not None:
        # A backup promoted to a monthly tier (or under a longer policy than when it was
        # copied) has its replica lock moved to its new horizon; a no-op when it reaches it.
        for record in completed:
            if "monthly" in plan.keep.get(record.id, []):
                extend_lock(svc, schema, record)
    retired = svc.records.retire(schema, plan.delete, "retention", now)
    for record in retired:
        update_manifest(
            svc,
            schema,
            record,
            deleted_at=record.deleted_at.isoformat() if record.deleted_at else None,
        )
        audit_by(
            svc,
            schema,
            "retention",
            "backup.retention",
            "deleted",
            backup_id=record.id,
            trigger=record.trigger.value,
        )
    if retired:
        svc.metrics.add("BackupsRetired", len(retired), "Count")
        logger.info(
            "retention deleted backups",
            extra={"clinic": schema, "count": len(retired), "kept": len(plan.keep)},
        )
    return plan
